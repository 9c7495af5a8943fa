"""The collab job publishes learned vectors; the collab source serves them in the home feed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

from pipelines.serving.jobs import JobContext, run_job
from ranking.pipeline import FeedQuery, PipelineResult
from ranking.retrieval.engagement import engagement_from_events
from ranking.retrieval.user_vectors import get_user_vectors
from storage.index.edge import EdgeVectorIndex


def _home(engine: Any, user_id: int) -> PipelineResult:
    query = FeedQuery(
        user_id=user_id, limit=20, now=datetime.now(UTC).replace(tzinfo=None), session_id="t"
    )
    result: PipelineResult = engine.products["home"].run(query)
    return result


def _user_with_history(engine: Any) -> int:
    pairs = engagement_from_events(engine.store)
    counts = pairs.group_by("user_id").len().sort(["len", "user_id"], descending=[True, False])
    return int(counts["user_id"][0])


def test_source_returns_nothing_before_the_job_has_run(engine: Any) -> None:
    result = _home(engine, _user_with_history(engine))
    assert result.source_counts.get("collab", 0) == 0
    assert "collab" not in result.failed_sources
    assert result.page.height > 0


def test_job_writes_collab_vectors_next_to_caption_vectors(engine: Any) -> None:
    report = run_job("collab", JobContext(engine))
    assert report.ok, report.message
    assert report.counts["fitted"] is True
    dim = report.counts["dim"]
    index = engine.index
    assert isinstance(index, EdgeVectorIndex)  # the real embedded Qdrant Edge shard
    spaces = index.spaces()
    assert spaces["collab"].size == dim and spaces["collab"].distance == "dot"
    assert "caption" in spaces
    stored = engine.store.get_vectors("collab")
    assert stored is not None
    ids, mat = stored
    assert len(ids) == report.counts["clips"] and mat.shape[1] == dim
    some = ids[:5]
    collab = index.get_vectors("collab", some)
    caption = index.get_vectors("caption", some)
    assert set(collab) == set(int(i) for i in some)
    assert set(caption) == set(int(i) for i in some)  # caption vectors kept
    np.testing.assert_allclose(collab[int(some[0])], mat[0], atol=1e-5)
    users = get_user_vectors(engine.store, "collab")
    assert len(users) == report.counts["users"] > 0


def test_home_feed_gets_collab_candidates_for_a_user_with_history(engine: Any) -> None:
    uid = _user_with_history(engine)
    assert run_job("collab", JobContext(engine)).ok
    result = _home(engine, uid)
    assert result.source_counts.get("collab", 0) > 0
    assert "collab" not in result.failed_sources
    seen = engine.state.activity.seen.get(uid, set())
    got = engine.index.search("collab", engine.collab.users.get(uid), limit=5)
    assert got
    page_ids = set(result.page["item_id"].to_list())
    assert not page_ids & seen


def test_cold_user_gets_no_collab_candidates(engine: Any) -> None:
    assert run_job("collab", JobContext(engine)).ok
    cold = 9_999_001
    engine.add_users(pl.DataFrame({"user_id": [cold]}))
    result = _home(engine, cold)
    assert result.source_counts.get("collab", 0) == 0
    assert "collab" not in result.failed_sources


def test_user_vectors_survive_a_restart(world_dir: Any) -> None:
    from pipelines.serving.engine import open_engine

    eng = open_engine(world_dir)
    try:
        assert run_job("collab", JobContext(eng)).ok
        uid = _user_with_history(eng)
    finally:
        eng.close()
    eng = open_engine(world_dir)
    try:
        assert eng.collab.users.get(uid) is not None
        assert _home(eng, uid).source_counts.get("collab", 0) > 0
    finally:
        eng.close()


def test_jobs_cli_runs_collab(world_dir: Any) -> None:
    import json

    from typer.testing import CliRunner

    from api.cli import app

    result = CliRunner().invoke(app, ["jobs", "run", "collab", "--data-dir", str(world_dir)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["name"] == "collab" and report["ok"] is True
    assert report["counts"]["indexed"] > 0


def test_erasing_a_user_drops_their_learned_vector(engine: Any) -> None:
    from pipelines.serving.erasure import erase_user

    uid = _user_with_history(engine)
    assert run_job("collab", JobContext(engine)).ok
    assert engine.collab.users.get(uid) is not None
    erase_user(engine, uid)
    assert engine.collab.users.get(uid) is None
    assert uid not in get_user_vectors(engine.store, "collab")
