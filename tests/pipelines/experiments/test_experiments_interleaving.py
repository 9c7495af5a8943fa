"""Team-draft interleaving on the served page: the selector, the logged teams and the read-back
of wins, ties and losses (a planted log with a known better ranker, and the real app)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from api.cli import app
from pipelines.experiments import parse_experiment, team_draft_interleave
from pipelines.experiments.analysis import analyze
from pipelines.experiments.errors import ExperimentDefinitionError
from pipelines.experiments.interleaving_log import interleaved_slots, interleaving_report
from pipelines.experiments.ope_log import logged_slots
from pipelines.experiments.repository import ExperimentRepository
from pipelines.experiments.selectors.interleaving import INTERLEAVING_KEY
from ranking.pipeline import FeedQuery
from ranking.side_effects.log_impressions import LogImpressionsSideEffect
from storage.store import Store
from tests.conftest import make_key

T0 = datetime(2026, 11, 1, 12, 0, 0)


def _exp(**changes: Any) -> Any:
    data: dict[str, Any] = {
        "name": "mood-interleave",
        "salt": "il1",
        "status": "running",
        "arms": [
            {"name": "unsteered", "overrides": {"mood_strength": 0.0}},
            {"name": "steered", "overrides": {"mood_strength": 1.0}},
        ],
        "interleave": ["unsteered", "steered"],
    }
    data.update(changes)
    return parse_experiment(data)


def test_interleave_must_name_two_different_arms() -> None:
    for bad in (["unsteered"], ["unsteered", "unsteered"], ["unsteered", "nope"]):
        with pytest.raises(ExperimentDefinitionError, match="interleave must name two"):
            _exp(interleave=bad)
    assert _exp().interleave == ["unsteered", "steered"]
    assert _exp(interleave=None).interleave is None


class _Collect:
    def __init__(self) -> None:
        self.frames: list[pl.DataFrame] = []

    def submit(self, events: pl.DataFrame) -> None:
        self.frames.append(events)


def _planted_store(path: Path, *, pages: int, p_a: float, p_b: float, seed: int) -> Store:
    """Interleaved pages of two fixed rankings logged by the real impression logger, with
    clicks planted at rate ``p_a`` on ranker A's clips and ``p_b`` on ranker B's."""
    rng = np.random.default_rng(seed)
    sink = _Collect()
    logger = LogImpressionsSideEffect(sink, pipeline="home", features=())
    clicks: list[dict[str, Any]] = []
    for k in range(pages):
        ranking_a = [int(i) for i in rng.permutation(40)[:10] + 1]
        ranking_b = [int(i) for i in rng.permutation(40)[:10] + 1]
        items, teams = team_draft_interleave(ranking_a, ranking_b, 10, rng)
        now = T0 + timedelta(minutes=k)
        query = FeedQuery(user_id=k, limit=10, now=now, session_id=f"s{k}", request_id=f"q{k}")
        query.context.experiments = {"mood-interleave": "steered"}
        query.context.experiment_records = {
            INTERLEAVING_KEY: {
                "experiment": "mood-interleave",
                "a": "unsteered",
                "b": "steered",
                "team_a": [i for i, t in zip(items, teams, strict=True) if t == "a"],
                "team_b": [i for i, t in zip(items, teams, strict=True) if t == "b"],
            },
        }
        page = pl.DataFrame({"item_id": items, "source": ["trending"] * len(items)})
        logger.run(query, page.with_row_index("position"))
        for item, team in zip(items, teams, strict=True):
            if rng.random() < (p_a if team == "a" else p_b):
                clicks.append({"user_id": k, "item_id": item, "ts": now + timedelta(seconds=9)})
    store = Store(path)
    store.append_events(pl.concat(sink.frames))
    if clicks:
        ev = pl.DataFrame(clicks).with_columns(
            pl.Series("event_id", [f"c{i}" for i in range(len(clicks))]),
            pl.lit("view").alias("event_type"),
            pl.lit(0.9).alias("watch_frac"),
            pl.lit(20.0).alias("watch_s"),
        )
        store.append_events(ev)
    return store


def test_planted_better_ranker_wins_and_equal_rankers_tie(tmp_path: Path) -> None:
    better = _planted_store(
        tmp_path / "b" / "steerfeed.duckdb", pages=300, p_a=0.05, p_b=0.2, seed=1
    )
    rep = interleaving_report(better, _exp())
    assert rep is not None
    assert rep["pages"] == 300 and rep["a"] == "unsteered" and rep["b"] == "steered"
    assert rep["wins_a"] + rep["wins_b"] + rep["ties"] == 300
    assert rep["wins_b"] > 2 * rep["wins_a"] and rep["p_value"] < 1e-6
    assert rep["winner"] == "steered" and rep["preference_b"] > 0.1
    assert rep["slots"]["a"] + rep["slots"]["b"] == 3000
    assert rep["credited_slots"]["b"] > rep["credited_slots"]["a"]
    ExperimentRepository(better).save(_exp())
    better.close()
    res = CliRunner().invoke(
        app, ["experiments", "analyze", "mood-interleave", "--data-dir", str(tmp_path / "b")]
    )
    assert res.exit_code == 0, res.output
    assert "interleaving unsteered (A) vs steered (B): 300 pages" in res.output
    assert "winner=steered" in res.output
    same = _planted_store(tmp_path / "s.duckdb", pages=300, p_a=0.15, p_b=0.15, seed=2)
    rep_same = interleaving_report(same, _exp())
    assert rep_same is not None and rep_same["p_value"] > 0.01 and rep_same["winner"] is None
    assert interleaving_report(same, _exp(interleave=None)) is None
    empty = interleaving_report(same, _exp(name="other"))
    assert empty is not None and empty["pages"] == 0 and "message" in empty


def test_served_pages_interleave_the_two_arms_and_analysis_reports_the_winner(
    client: Any,
) -> None:
    eng = client.app.state.engine
    repo = eng.experiments
    # Exploration on too: explored slots belong to neither team and are not credited.
    exp = _exp(
        arms=[
            {"name": "unsteered", "overrides": {"mood_strength": 0.0, "exploration_rate": 0.2}},
            {"name": "steered", "overrides": {"mood_strength": 1.0, "exploration_rate": 0.2}},
        ]
    )
    repo.save(exp)
    users = sorted(
        eng.state.activity.history, key=lambda u: -len(eng.state.activity.history[u].rows)
    )[:12]
    for uid in users:
        h = make_key(client, "user", uid)
        r = client.post(f"/v1/users/{uid}/mood", json={"text": "dogs"}, headers=h)
        assert r.status_code == 201, r.text
    pipeline = eng.products["home"]
    now = datetime.now(UTC).replace(tzinfo=None)
    served = explored = 0
    for rnd in range(3):
        for uid in users:
            q = FeedQuery(user_id=uid, limit=10, now=now, session_id=f"s{uid}-{rnd}")
            res = pipeline.run(q)
            for f in res.effects:
                f.result()
            if res.page.height == 0:
                continue
            record = res.query.context.experiment_records[INTERLEAVING_KEY]
            team_a, team_b = record["team_a"], record["team_b"]
            assert record["a"] == "unsteered" and record["b"] == "steered"
            teamed = res.page.filter(~pl.col("explored"))["item_id"].to_list()
            assert set(teamed) <= set(team_a) | set(team_b)
            explored += int(res.page["explored"].sum())
            served += 1
    assert served >= 30
    eng.writer.flush()
    slots = interleaved_slots(eng.store, exp.name)
    assert slots["request_id"].n_unique() == served
    assert slots["team"].null_count() == explored > 0
    assert logged_slots(eng.store).height == 0  # interleaved pages are not off-policy data
    # Plant long views on the dog clips: the steered ranker contributes more of them.
    st = eng.state
    dogs = {
        int(i)
        for i in slots["item_id"].unique()
        if "dogs" in st.catalogue.topics[st.catalogue.row_of[int(i)]]
    }
    dog = slots.filter(pl.col("item_id").is_in(sorted(dogs)))
    assert dog.height > 0
    assert dog.filter(pl.col("team") == "b").height > dog.filter(pl.col("team") == "a").height
    eng.ingest_events(
        pl.DataFrame(
            {
                "event_id": [f"lv{i}" for i in range(dog.height)],
                "user_id": dog["user_id"],
                "item_id": dog["item_id"],
                "event_type": ["view"] * dog.height,
                "ts": [now + timedelta(seconds=15)] * dog.height,
                "watch_s": [25.0] * dog.height,
                "watch_frac": [0.95] * dog.height,
            }
        )
    )
    eng.writer.flush()
    report = analyze(eng.store, exp)
    il = report["interleaving"]
    assert il["pages"] == served and il["wins_b"] > il["wins_a"]
    assert il["winner"] == "steered" and il["p_value"] < 0.01
    h = make_key(client, "analyst")
    api = client.get(f"/v1/experiments/{exp.name}/analysis", headers=h)
    assert api.status_code == 200, api.text
    assert api.json()["interleaving"]["wins_b"] == il["wins_b"]
