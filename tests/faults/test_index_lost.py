"""A lost or incomplete vector index is reported as degraded and rebuilt from the store's
vectors (the source of truth), never silently replaced by an empty one."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipelines.serving.engine import CAPTION_SPACE, open_engine
from pipelines.serving.jobs import JobContext, run_job
from storage.index.base import SearchFilter

INDEX_SOURCES = {"ann_user_vector", "collab", "mood"}


def _user(eng: Any) -> int:
    return int(
        max(eng.state.activity.history, key=lambda u: len(eng.state.activity.history[u].rows))
    )


def _settled(eng: Any) -> None:
    """Wait for the start-up comparison (and repair) of the index with the store."""
    reconciler = getattr(eng, "index_reconciler", None)
    if reconciler is not None:
        assert reconciler.wait(timeout=120)


def _index_job(eng: Any) -> dict[str, Any]:
    rep = run_job("index", JobContext(eng, {}))
    assert rep.ok, rep.message
    return rep.counts


def test_a_missing_index_folder_is_reported_and_rebuilt_from_the_store(world_dir: Path) -> None:
    shutil.rmtree(world_dir / "vectors")
    eng = open_engine(world_dir)
    try:
        stored = eng.store.vector_ids(CAPTION_SPACE)
        assert len(stored) == 800
        # degraded from the first request, while the rebuild runs
        health = eng.health()
        assert health["status"] == "degraded", health
        assert health["index"].startswith("degraded"), health["index"]
        _settled(eng)
        health = eng.health()
        assert health["status"] == "ok" and health["index"] == "ok", health
        assert health["index_reconcile"]["last_run"]["restored"] == {"caption": 800}
        assert eng.index is not None
        assert np.array_equal(eng.index.point_ids(CAPTION_SPACE), stored)
        # payloads came back with the points: the safety filter and topic filters work
        vec = eng.state.catalogue.vectors[0]
        safe = SearchFilter(none_of={"safety_label": ["violative", "borderline"]})
        hits = eng.index.search(CAPTION_SPACE, vec, limit=50, flt=safe)
        labels = dict(eng.store.query("SELECT item_id, safety_label FROM clips").iter_rows())
        assert len(hits) == 50 and all(labels[i] == "safe" for i, _ in hits)
        page = eng.feed(_user(eng), limit=20)
        assert page.items and not INDEX_SOURCES & set(page.degraded_sources)
    finally:
        eng.close()


def test_index_folder_removed_under_a_running_engine(world_dir: Path) -> None:
    eng = open_engine(world_dir)
    try:
        _settled(eng)
        assert eng.health()["index"] == "ok"
        shutil.rmtree(world_dir / "vectors")
        health = eng.health()
        assert health["status"] == "degraded" and "gone" in health["index"], health["index"]
        assert INDEX_SOURCES & set(eng.feed(_user(eng), limit=10).degraded_sources)
        # a clip added meanwhile: committed, its upsert went into the removed files
        author = int(eng.store.scalar("SELECT min(author_id) FROM clips"))
        clip = pl.DataFrame(
            {"item_id": [900_001], "author_id": [author], "caption": ["a cat on a skateboard"]}
        )
        eng.add_clips(clip)
        counts = _index_job(eng)
        assert (world_dir / "vectors").is_dir()
        assert eng.index is not None
        assert np.array_equal(eng.index.point_ids(), eng.store.vector_ids(CAPTION_SPACE))
        assert 900_001 in set(eng.index.point_ids(CAPTION_SPACE).tolist())
        assert counts["rebuilt"] is True and counts["restored"] == 801, counts
        assert eng.health()["index"] == "ok"
    finally:
        eng.close()


def test_the_index_job_restores_missed_clips_and_drops_removed_ones(world_dir: Path) -> None:
    eng = open_engine(world_dir)
    try:
        _settled(eng)
        index = eng.index
        assert index is not None
        stored = eng.store.vector_ids(CAPTION_SPACE)
        lost = stored[:25]
        index.delete(lost)  # committed clips the index never took
        ghost = np.array([987_654], dtype=np.int64)  # a point of a clip the store lacks
        index.upsert(ghost, {CAPTION_SPACE: eng.state.catalogue.vectors[:1]}, [{"author_id": 1}])
        counts = _index_job(eng)
        assert np.array_equal(index.point_ids(), stored)
        assert counts["restored"] == 25 and counts["removed"] == 1, counts
        assert _index_job(eng)["restored"] == 0  # nothing left to do
    finally:
        eng.close()


def test_collab_vectors_are_rebuilt_too(world_dir: Path) -> None:
    from pipelines.serving.jobs.collab import fit_and_publish
    from ranking.retrieval.settings import COLLAB_SPACE

    eng = open_engine(world_dir)
    try:
        _settled(eng)
        assert fit_and_publish(eng)["fitted"]
        collab = eng.store.vector_ids(COLLAB_SPACE)
        assert len(collab) > 100
    finally:
        eng.close()
    shutil.rmtree(world_dir / "vectors")
    eng = open_engine(world_dir)
    try:
        _settled(eng)
        assert eng.index is not None
        assert np.array_equal(eng.index.point_ids(COLLAB_SPACE), collab)
        assert len(eng.index.point_ids(CAPTION_SPACE)) == 800
        assert eng.health()["index"] == "ok"
    finally:
        eng.close()
