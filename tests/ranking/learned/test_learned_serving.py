"""The learned ranker serving pages through the real app on the tiny world."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from ranking.explain import FEATURE_WORDS, LOW_WORDS
from ranking.overrides import RequestOverrides
from tests.conftest import copy_world, make_key


@pytest.fixture(scope="module")
def trained_dir(tiny_world_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny world after one run of the train job (which promoted its model)."""
    from pipelines.serving.engine import open_engine
    from pipelines.serving.jobs import JobContext, run_job
    from ranking.learned.training import TrainSettings

    d = tmp_path_factory.mktemp("trained") / "world"
    copy_world(tiny_world_dir, d)
    eng = open_engine(d)
    try:
        rep = run_job(
            "train",
            JobContext(eng, {"settings": TrainSettings(num_rounds=80, min_data_in_leaf=20)}),
        )
    finally:
        eng.close()
    assert rep.ok, rep.message
    assert rep.counts["promoted"], rep.counts["gate"]
    return d


@pytest.fixture()
def trained_copy(trained_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "world"
    copy_world(trained_dir, dst)
    return dst


def _client(data_dir: Path) -> Any:
    from fastapi.testclient import TestClient

    from api.http.main import create_app
    from api.http.settings import ApiSettings
    from pipelines.serving.engine import open_engine

    app = create_app(
        engine_factory=lambda: open_engine(data_dir), api_settings=ApiSettings(scheduler=False)
    )
    return TestClient(app)


@pytest.fixture()
def trained_client(trained_copy: Path) -> Iterator[Any]:
    with _client(trained_copy) as c:
        yield c


def _busy_user(client: Any) -> int:
    eng = client.app.state.engine
    return int(
        max(eng.state.activity.history, key=lambda u: len(eng.state.activity.history[u].rows))
    )


def _serving(data_dir: Path) -> str | None:
    from ranking.learned.registry import ModelRegistry

    return ModelRegistry(data_dir / "models").serving_version()


def test_feed_is_scored_by_the_promoted_model_and_explained_in_words(
    trained_client: Any, trained_copy: Path
) -> None:
    h = make_key(trained_client, "service")
    uid = _busy_user(trained_client)
    r = trained_client.get("/v1/feed", params={"user_id": uid, "limit": 10}, headers=h)
    assert r.status_code == 200
    items = r.json()["items"]
    assert len(items) == 10
    version = _serving(trained_copy)
    words = set(FEATURE_WORDS.values()) | set(LOW_WORDS.values())
    for it in items:
        ex = it["explanation"]
        assert ex["model"] == version
        assert ex["top_features"], it
        # Each reason for the clip is a phrase in words, not a feature name.
        for phrase in ex["why"]:
            assert phrase in words, phrase
        assert all("_" not in p for p in ex["why"] + ex["held_back"])
        if ex["why"]:
            assert ex["why"][0] in it["reason"]
    health = trained_client.get("/healthz").json()
    assert health["learned_ranker"] == {
        "serving": version,
        "promoted": version,
        "degraded": False,
    }


def test_corrupt_model_file_falls_back_to_hand_weighted_and_reports_degraded(
    trained_copy: Path,
) -> None:
    version = _serving(trained_copy)
    assert version is not None
    (trained_copy / "models" / version / "ranker.txt").write_text("not a model")
    with _client(trained_copy) as c:
        h = make_key(c, "service")
        r = c.get("/v1/feed", params={"user_id": _busy_user(c), "limit": 10}, headers=h)
        assert r.status_code == 200 and len(r.json()["items"]) == 10
        for it in r.json()["items"]:
            assert it["explanation"]["model"] is None  # hand-weighted explanations
        health = c.get("/healthz").json()
    assert health["learned_ranker"]["degraded"] is True
    assert health["learned_ranker"]["serving"] == "hand_weighted"
    assert "checksum" in health["learned_ranker"]["error"]
    assert health["status"] == "degraded"


def test_value_weights_and_ranker_model_overrides_are_honoured(trained_copy: Path) -> None:
    from pipelines.serving.engine import open_engine

    eng = open_engine(trained_copy)
    try:
        uid = max(eng.state.activity.history, key=lambda u: len(eng.state.activity.history[u].rows))
        base = eng.feed(uid, limit=10)
        used = base.diagnostics.context.learned_ranker
        assert used is not None and used.weights is not None
        assert used.model == _serving(trained_copy)
        # Only skips count, and strongly: a different value per clip, a different page.
        only_skip = {k: 0.0 for k in used.weights} | {"skip": -10.0}
        tilted = eng.feed(uid, limit=10, overrides=RequestOverrides(value_weights=only_skip))
        tilted_used = tilted.diagnostics.context.learned_ranker
        assert tilted_used is not None and tilted_used.weights is not None
        assert tilted_used.weights["skip"] == -10.0
        assert [i.item_id for i in tilted.items] != [i.item_id for i in base.items]
        # An unknown head is refused where the overrides are made (an experiment's definition),
        # never on a page.
        with pytest.raises(ValidationError, match="valid: long_view"):
            RequestOverrides(value_weights={"likes": 3.0})
        # A stored version can be chosen per request; an unknown one falls back.
        pinned = eng.feed(uid, limit=10, overrides=RequestOverrides(ranker_model=used.model))
        assert pinned.diagnostics.context.learned_ranker == used
        unknown = eng.feed(uid, limit=10, overrides=RequestOverrides(ranker_model="v-missing"))
        assert unknown.diagnostics.context.learned_ranker == used
    finally:
        eng.close()


def test_without_a_promoted_model_the_hand_weighted_scorer_serves(engine: Any) -> None:
    from ranking.pipeline import FeedQuery, is_enabled
    from ranking.scorers.hand_weighted import HandWeightedScorer
    from ranking.scorers.lightgbm_scorer import LightGbmScorer

    scorers = engine.products["home"].scorers
    learned = next(s for s in scorers if isinstance(s, LightGbmScorer))
    hand = next(s for s in scorers if isinstance(s, HandWeightedScorer))
    q = FeedQuery(user_id=0, limit=5, now=datetime(2026, 1, 1), session_id="s")
    assert not is_enabled(learned, q) and is_enabled(hand, q)
    assert engine.health()["learned_ranker"]["serving"] == "hand_weighted"
    page = engine.feed(next(iter(engine.state.profiles.users)), limit=5)
    assert "s.hand_weighted" in page.diagnostics.timings_ms
    assert "s.learned_value" in page.diagnostics.skipped
    assert page.diagnostics.context.learned_ranker is None


def test_models_cli_lists_rolls_back_and_promotes_through_the_gate(trained_copy: Path) -> None:
    from api.cli import app

    runner = CliRunner()
    version = _serving(trained_copy)
    out = runner.invoke(app, ["models", "list", "--json", "--data-dir", str(trained_copy)])
    assert out.exit_code == 0, out.output
    listed = json.loads(out.output)
    assert listed["serving"] == version and listed["models"][0]["serving"] is True
    out = runner.invoke(app, ["models", "rollback", "--data-dir", str(trained_copy)])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == {"rolled_back": version, "serving": "hand_weighted"}
    assert _serving(trained_copy) is None
    out = runner.invoke(app, ["models", "promote", str(version), "--data-dir", str(trained_copy)])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["gate"]["passed"] is True
    assert _serving(trained_copy) == version
    out = runner.invoke(app, ["models", "promote", "bad version", "--data-dir", str(trained_copy)])
    assert out.exit_code == 2 and "version" in out.output


def test_author_stats_job_gives_the_serving_state_credibility(engine: Any) -> None:
    from pipelines.serving.jobs import JobContext, run_job

    assert engine.state.engagement.author_stats_computed_at() is None
    rep = run_job("author_stats", JobContext(engine))
    assert rep.ok and rep.counts["authors"] > 0
    assert rep.counts["serving"] == "hand_weighted"
    assert engine.state.engagement.author_stats_computed_at() is not None


def test_models_api_lists_for_analysts_and_rolls_back_for_admins(trained_client: Any) -> None:
    version = trained_client.app.state.engine.learned.serving_version()
    r = trained_client.get("/v1/models", headers=make_key(trained_client, "analyst"))
    assert r.status_code == 200
    body = r.json()
    assert body["serving"] == version and body["models"][0]["metrics"]["ndcg@10"] > 0
    assert body["models"][0]["gate"]["passed"] is True
    h_user = make_key(trained_client, "user", 1)
    assert trained_client.post("/v1/models/rollback", headers=h_user).status_code == 403
    h_admin = make_key(trained_client, "admin")
    r = trained_client.post("/v1/models/rollback", headers=h_admin)
    assert r.json() == {"rolled_back": version, "serving": "hand_weighted"}
    uid = _busy_user(trained_client)
    page = trained_client.get("/v1/feed", params={"user_id": uid}, headers=h_admin).json()
    assert all(i["explanation"]["model"] is None for i in page["items"])
    again = trained_client.post("/v1/models/rollback", headers=h_admin)
    assert again.status_code == 409 and "nothing to roll back" in again.json()["detail"]


def test_learned_explanations_say_only_what_is_true_and_keep_the_steering_fields(
    trained_client: Any,
) -> None:
    from tests.steering.helpers import reason_parts, statement_holds

    eng = trained_client.app.state.engine
    users = sorted(
        eng.state.activity.history, key=lambda u: -len(eng.state.activity.history[u].rows)
    )[:5]
    checked = 0
    for uid in users:
        h = make_key(trained_client, "user", uid)
        items = trained_client.get(
            "/v1/feed", params={"user_id": uid, "limit": 20}, headers=h
        ).json()["items"]
        for it in items:
            ex = it["explanation"]
            assert ex["model"] is not None
            for phrase in [*reason_parts(it["reason"]), *ex["why"], *ex["held_back"]]:
                holds = statement_holds(eng, uid, it["item_id"], phrase)
                if holds is not None:
                    assert holds, (uid, it["item_id"], phrase)
                    checked += 1
    assert checked > 0
    # With a mood, the learned explanation and the steering fields arrive together.
    uid = users[0]
    h = make_key(trained_client, "user", uid)
    r = trained_client.post(f"/v1/users/{uid}/mood", json={"text": "calm nature"}, headers=h)
    assert r.status_code == 201
    items = trained_client.get("/v1/feed", params={"user_id": uid, "limit": 10}, headers=h).json()[
        "items"
    ]
    for it in items:
        ex = it["explanation"]
        assert ex["model"] is not None and ex["mood"] == "calm nature"
        assert ex["mood_match"] is not None and "mood:calm nature" in ex["rules_applied"]
