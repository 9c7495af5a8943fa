"""The experiments wiring on a real engine: arms into overrides, exposure and propensities on
the logged impressions, the store round trip and the analysis read back from the log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pytest

from pipelines.experiments import assign, exploration_propensities, parse_experiment
from pipelines.experiments.analysis import analyze
from pipelines.experiments.query_hydrators.experiment_arms import (
    HOLDBACK_ARM,
    ExperimentArmsQueryHydrator,
)
from pipelines.experiments.repository import ExperimentRepository, UnknownExperimentError
from pipelines.experiments.selectors.exploring import ExploringSelector
from ranking.overrides import RequestOverrides
from ranking.pipeline import FeedQuery
from ranking.selectors.diverse_top_k import DiverseTopKSelector


def _candidates(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_id": np.arange(1, n + 1, dtype=np.int64),
            "author_id": np.arange(n, dtype=np.int64) % 7,
            "topic": [f"t{i % 5}" for i in range(n)],
            "score": np.linspace(1.0, 0.0, n),
        }
    )


def _query(rate: float | None = None, request_id: str = "r1") -> FeedQuery:
    q = FeedQuery(
        user_id=1, limit=10, now=datetime(2025, 6, 1), session_id="s", request_id=request_id
    )
    if rate is not None:
        q.overrides = RequestOverrides(exploration_rate=rate)
    return q


def test_no_exploration_serves_the_inner_page_with_propensity_one() -> None:
    cands = _candidates(40)
    inner = DiverseTopKSelector(max_per_author=2)
    sel = ExploringSelector(inner, rate=0.0)
    page = sel.select(_query(), cands)
    assert page["item_id"].to_list() == inner.select(_query(), cands)["item_id"].to_list()
    assert page["propensity"].to_list() == [1.0] * page.height


def test_propensities_match_the_exploration_formula() -> None:
    cands = _candidates(30)
    sel = ExploringSelector(
        DiverseTopKSelector(max_per_author=30, topic_decay=1.0), rate=0.5, pool_size=30
    )
    explored_any = False
    for k in range(20):
        page = sel.select(_query(request_id=f"r{k}"), cands)
        assert page.height == 10
        assert page["item_id"].n_unique() == 10
        expected = exploration_propensities(10, 0.5, 30, explored=page["explored"].to_numpy())
        np.testing.assert_allclose(page["propensity"].to_numpy(), expected)
        explored_any |= bool(page["explored"].any())
    assert explored_any


def test_exploration_draw_is_reproducible_per_request() -> None:
    cands = _candidates(30)
    sel = ExploringSelector(DiverseTopKSelector(), rate=0.3)
    a = sel.select(_query(request_id="same"), cands)["item_id"].to_list()
    b = sel.select(_query(request_id="same"), cands)["item_id"].to_list()
    assert a == b


def test_arm_override_of_the_rate_wins_over_the_default() -> None:
    cands = _candidates(30)
    sel = ExploringSelector(DiverseTopKSelector(), rate=0.9)
    page = sel.select(_query(rate=0.0), cands)
    assert not page["explored"].any()


def _exp(**changes: Any) -> Any:
    data: dict[str, Any] = {
        "name": "taper-test",
        "salt": "s1",
        "status": "running",
        "arms": [
            {"name": "control"},
            {"name": "taper", "overrides": {"governor_taper": 2.0, "exploration_rate": 0.5}},
        ],
    }
    data.update(changes)
    return parse_experiment(data)


def test_hydrator_writes_arm_settings_and_exposure_but_keeps_explicit_overrides() -> None:
    exp = _exp()
    hyd = ExperimentArmsQueryHydrator(lambda: [exp])
    users = [u for u in range(200) if assign(exp, u) == "taper"][:3]
    for uid in users:
        q = FeedQuery(user_id=uid, limit=5, now=datetime(2025, 6, 1), session_id="s")
        q.overrides = RequestOverrides(exploration_rate=0.0)
        hyd.hydrate(q)
        assert q.context.experiments == {"taper-test": "taper"}
        assert q.overrides.as_dict() == {"exploration_rate": 0.0, "governor_taper": 2.0}


def test_holdback_users_are_exposed_as_holdback_without_overrides() -> None:
    exp = _exp(holdback=0.5)
    hyd = ExperimentArmsQueryHydrator(lambda: [exp])
    seen = set()
    for uid in range(100):
        q = FeedQuery(user_id=uid, limit=5, now=datetime(2025, 6, 1), session_id="s")
        hyd.hydrate(q)
        arm = q.context.experiments.get("taper-test")
        seen.add(arm)
        if arm == HOLDBACK_ARM:
            assert q.overrides.as_dict() == {}
    assert HOLDBACK_ARM in seen and "taper" in seen


def test_experiment_outside_its_window_assigns_nobody() -> None:
    exp = _exp(start="2030-01-01T00:00:00Z")
    hyd = ExperimentArmsQueryHydrator(lambda: [exp])
    q = FeedQuery(user_id=3, limit=5, now=datetime(2025, 6, 1), session_id="s")
    hyd.hydrate(q)
    assert q.context.experiments == {} and q.overrides.as_dict() == {}


def test_repository_round_trip_start_stop(engine: Any) -> None:
    repo: ExperimentRepository = engine.experiments
    repo.save(_exp(status="draft"))
    assert repo.running() == []
    assert repo.set_status("taper-test", "running").status == "running"
    assert [e.name for e in repo.running()] == ["taper-test"]
    assert repo.get("taper-test").arm("taper").overrides.governor_taper == 2.0
    repo.set_status("taper-test", "stopped")
    assert repo.running() == []
    with pytest.raises(UnknownExperimentError, match="stored: \\['taper-test'\\]"):
        repo.get("nope")


def test_arms_hydrator_runs_before_the_others_and_exploration_wraps_the_selector(
    engine: Any,
) -> None:
    home = engine.products["home"]
    names = [q.name for q in home.query_hydrators]
    arms = next(q for q in home.query_hydrators if isinstance(q, ExperimentArmsQueryHydrator))
    # Right after the data controls and the user context: the others read the arm.
    assert names.index(arms.name) == names.index("user_context") + 1 == 2
    assert isinstance(home.selector, ExploringSelector)
    assert not isinstance(home.selector.inner, ExploringSelector)


def test_served_impressions_carry_arm_and_propensity_and_analysis_reads_them(engine: Any) -> None:
    repo = engine.experiments
    exp = _exp()
    repo.save(exp)
    pipeline = engine.products["home"]
    users = sorted(engine.state.profiles.users)[:60]
    now = datetime.now(UTC).replace(tzinfo=None)
    arms: dict[int, str] = {}
    served: set[int] = set()
    for uid in users:
        res = pipeline.run(FeedQuery(user_id=uid, limit=8, now=now, session_id=f"s{uid}"))
        if res.page.height:  # a teen in their sleep hours (wall clock) gets a stop card
            served.add(uid)
        for f in res.effects:
            f.result()
        arm = assign(exp, uid)
        assert arm is not None
        arms[uid] = arm
        assert res.query.context.experiments == {"taper-test": arm}
        if arm == "taper":
            assert res.query.overrides.governor_taper == 2.0
        else:
            assert res.query.overrides.governor_taper is None
    engine.writer.flush()
    imps = engine.store.query(
        "SELECT user_id, experiments, propensity FROM events "
        "WHERE event_type = 'impression' AND experiments LIKE '%taper-test%'"
    )
    assert len(served) >= 45
    assert set(imps["user_id"].unique().to_list()) == served
    assert imps["propensity"].min() < 0.5 < imps["propensity"].max()  # explored slots exist
    # Views for a few users, so the metrics have something to count.
    views = imps.group_by("user_id").first().head(20)
    ev = pl.DataFrame(
        {
            "event_id": [f"v{u}" for u in views["user_id"].to_list()],
            "user_id": views["user_id"],
            "item_id": [None] * views.height,
            "event_type": ["view"] * views.height,
            "ts": [now + timedelta(seconds=5)] * views.height,
            "watch_s": [30.0] * views.height,
        },
        schema_overrides={"item_id": pl.Int64},
    )
    engine.ingest_events(ev)
    report = analyze(engine.store, exp)
    counts = {a["name"]: a["users"] for a in report["arms"]}
    assert counts == {
        "control": sum(a == "control" for u, a in arms.items() if u in served),
        "taper": sum(a == "taper" for u, a in arms.items() if u in served),
    }
    assert report["srm"] is not None and report["srm"]["alarm"] is False
    minutes = report["comparisons"][0]["metrics"]["minutes"]
    assert minutes["n_a"] + minutes["n_b"] == len(served)
    assert minutes["ci_low"] <= minutes["diff"] <= minutes["ci_high"]
    total_minutes = sum(a["means"]["minutes"] * a["users"] for a in report["arms"])
    assert total_minutes == pytest.approx(20 * 0.5)
    assert report["comparisons"][0]["guardrails"]["status"] in ("pass", "fail", "inconclusive")
