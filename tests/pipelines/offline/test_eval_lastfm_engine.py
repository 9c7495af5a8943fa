"""The LastFM evaluation through the engine: pages of the served home feed, on a tiny world."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipelines.offline.eval_lastfm import RULES_OFF, run_lastfm_eval, validation_split
from tests.lastfm_world import write_tiny_lastfm


@pytest.fixture()
def small_folds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fold-rule settings a world of 80 people can train (the defaults need thousands)."""
    monkeypatch.setenv("STEERFEED_HISTORY_FOLDS", "2")
    monkeypatch.setenv("STEERFEED_HISTORY_ROUNDS", "20")
    monkeypatch.setenv("STEERFEED_HISTORY_MIN_DATA_IN_LEAF", "10")
    monkeypatch.setenv("STEERFEED_HISTORY_GATE_FRAC", "0.2")
    monkeypatch.setenv("STEERFEED_LEARNED_COMPILED_TREES", "false")


def test_pages_come_from_the_served_home_feed_and_beat_popularity(
    tmp_path: Path, small_folds: None
) -> None:
    data = write_tiny_lastfm(tmp_path / "lastfm")
    out = tmp_path / "top20.parquet"
    result = run_lastfm_eval(data, out=out, baselines=True, threads=1)
    engine = result["engine"]
    assert engine["job"]["rule"] == "history_folds"
    assert set(engine["rules_off"]) == set(RULES_OFF)
    # the trained model's own retrievers feed the page
    assert "retrievers" in engine["sources_on_pages"]
    project = result["project"]
    lo, hi = project["ndcg@10_ci95"]
    assert lo <= project["ndcg@10"] <= hi
    assert project["ndcg@10"] > result["popularity"]["ndcg@10"]
    recs = pl.read_parquet(out)
    # never an artist the person listened to in train
    train = pl.read_parquet(data / "split_seed0.parquet").filter(pl.col("split") == "train")
    overlap = recs.join(
        train.select(user_id=pl.col("userID").cast(pl.Int64), item_id=pl.col("artistID")),
        on=["user_id", "item_id"],
        how="semi",
    )
    assert overlap.height == 0
    assert recs.group_by("user_id").len()["len"].max() == 20


def test_validation_split_never_reads_the_test_rows(tmp_path: Path) -> None:
    data = write_tiny_lastfm(tmp_path / "lastfm")
    frame = pl.read_parquet(data / "split_seed0.parquet")
    val = validation_split(frame)
    test_pairs = frame.filter(pl.col("split") == "test").select("userID", "artistID")
    assert val.join(test_pairs, on=["userID", "artistID"], how="semi").height == 0
    assert val.height == frame.filter(pl.col("split") == "train").height
    assert 0.1 < val.filter(pl.col("split") == "test").height / val.height < 0.3
