"""LastFM evaluation: metrics on a hand-made case, the CLI's input checks, the full run (slow)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from api.cli import app
from pipelines.offline.eval_lastfm import evaluate_top_k, make_random_split, popularity_top_k
from tests.conftest import SHARED_DATA

LASTFM = SHARED_DATA / "lastfm_hetrec2k"


def _disc(rank: int) -> float:
    return 1.0 / math.log2(rank + 1)


def test_ndcg_and_recall_match_a_hand_computed_case() -> None:
    # User 1: test {10, 11, 12}; hits at ranks 1 and 3, item 12 ranked 25 (beyond 20).
    # User 2: test {20}; hit at rank 15 (counts for recall only).
    # User 3: test {30}; no recommendations at all (counts as zero).
    recs = pl.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2, 2],
            "item_id": [10, 99, 11, 12, 21, 20],
            "rank": [1, 2, 3, 25, 1, 15],
        }
    )
    test = pl.DataFrame({"user_id": [1, 1, 1, 2, 3], "item_id": [10, 11, 12, 20, 30]})
    got = evaluate_top_k(recs, test)
    ndcg_1 = (_disc(1) + _disc(3)) / (_disc(1) + _disc(2) + _disc(3))
    assert got["users"] == 3
    assert got["ndcg@10"] == pytest.approx((ndcg_1 + 0.0 + 0.0) / 3)
    assert got["recall@20"] == pytest.approx((2 / 3 + 1 / 1 + 0.0) / 3)


def test_recall_divides_by_at_most_twenty() -> None:
    test = pl.DataFrame({"user_id": [1] * 30, "item_id": list(range(30))})
    recs = pl.DataFrame({"user_id": [1] * 20, "item_id": list(range(20)), "rank": range(1, 21)})
    got = evaluate_top_k(recs, test)
    assert got["recall@20"] == pytest.approx(1.0)
    assert got["ndcg@10"] == pytest.approx(1.0)


def test_popularity_never_recommends_a_train_item() -> None:
    train = pl.DataFrame(
        {"user_id": [1, 2, 2, 3, 3, 3], "item_id": [5, 5, 6, 5, 6, 7], "weight": [1.0] * 6}
    )
    recs = popularity_top_k(train, np.array([1, 3]), k=2)
    assert recs.filter(pl.col("user_id") == 1)["item_id"].to_list() == [6, 7]
    assert recs.filter(pl.col("user_id") == 3).height == 0


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["eval", "lastfm", *args])
    return result.exit_code, result.output


def test_cli_rejects_a_missing_data_folder(tmp_path: Path) -> None:
    code, out = _run("--data", str(tmp_path / "nope"), "--json")
    assert code == 2
    assert "no such folder" in out
    assert "Traceback" not in out


def test_cli_rejects_a_folder_without_the_lastfm_files(tmp_path: Path) -> None:
    code, out = _run("--data", str(tmp_path))
    assert code == 2
    assert "user_artists.parquet" in out


def test_cli_rejects_a_bad_split_and_a_folder_as_out(tmp_path: Path) -> None:
    data = tmp_path / "lastfm"
    data.mkdir()
    for name in ("user_artists", "user_friends", "user_taggedartists"):
        pl.DataFrame({"x": [1]}).write_parquet(data / f"{name}.parquet")
    code, out = _run("--data", str(data), "--split", "random:abc")
    assert code == 2 and "random:SEED" in out
    code, out = _run("--data", str(data), "--split", str(tmp_path / "missing.parquet"))
    assert code == 2 and "no such file" in out
    code, out = _run("--data", str(data), "--out", str(tmp_path))
    assert code == 2 and "folder" in out
    not_parquet = tmp_path / "split.parquet"
    not_parquet.write_text("userID,artistID,split\n")
    code, out = _run("--data", str(data), "--split", str(not_parquet))
    assert code == 2 and "Parquet" in out
    assert "Traceback" not in out


@pytest.mark.skipif(not LASTFM.is_dir(), reason="shared LastFM data absent")
def test_random_split_holds_out_about_a_fifth() -> None:
    split = make_random_split(LASTFM, 5)
    share = split.filter(pl.col("split") == "test").height / split.height
    assert 0.19 < share < 0.21
    assert split.equals(make_random_split(LASTFM, 5))


@pytest.mark.slow
@pytest.mark.skipif(not LASTFM.is_dir(), reason="shared LastFM data absent")
def test_served_feed_beats_als_and_ease_on_the_official_split(tmp_path: Path) -> None:
    out = tmp_path / "top20.parquet"
    code, text = _run("--data", str(LASTFM), "--out", str(out), "--json")
    assert code == 0, text
    result = json.loads(text.strip().splitlines()[-1])
    # the served home feed: measured 0.2745 (docs/benchmarks.md); the target 0.29 is not met
    assert result["project"]["ndcg@10"] >= 0.27
    assert result["project"]["ndcg@10"] > result["als_implicit"]["ndcg@10"]
    assert result["project"]["ndcg@10"] > result["ease"]["ndcg@10"]
    assert result["engine"]["job"]["rule"] == "history_folds"
    recs = pl.read_parquet(out)
    assert recs.columns == ["user_id", "item_id", "rank"]
    assert recs.group_by("user_id").len()["len"].max() == 20
