"""The pipeline runner enforces stage contracts and fails open on sources."""

from __future__ import annotations

import time
from datetime import datetime

import numpy as np
import polars as pl
import pytest

from ranking.errors import ContractViolation
from ranking.pipeline import FeedQuery, FilterResult, RankingPipeline, split_by_mask


class ListSource:
    timeout_s = 0.5

    def __init__(self, name: str, ids: list[int]) -> None:
        self.name = name
        self.ids = ids

    def fetch(self, query: FeedQuery) -> pl.DataFrame:
        return pl.DataFrame({"item_id": self.ids, "source_score": [1.0] * len(self.ids)})


class BrokenSource:
    name = "broken"
    timeout_s = 0.5

    def fetch(self, query: FeedQuery) -> pl.DataFrame:
        raise RuntimeError("remote down")


class SlowSource:
    name = "slow"
    timeout_s = 0.05

    def fetch(self, query: FeedQuery) -> pl.DataFrame:
        time.sleep(0.5)
        return pl.DataFrame({"item_id": [99], "source_score": [1.0]})


class AddAuthor:
    name = "author"

    def hydrate(self, query: FeedQuery, c: pl.DataFrame) -> pl.DataFrame:
        return c.with_columns(
            (pl.col("item_id") % 3).alias("author_id"), pl.lit("t").alias("topic")
        )


class DropRows:
    name = "drop_rows"

    def hydrate(self, query: FeedQuery, c: pl.DataFrame) -> pl.DataFrame:
        return c.head(1)


class OddFilter:
    name = "odd"

    def apply(self, query: FeedQuery, c: pl.DataFrame) -> FilterResult:
        return split_by_mask(c, (c["item_id"] % 2 == 1))


class IdScorer:
    name = "id"

    def score(self, query: FeedQuery, c: pl.DataFrame) -> np.ndarray:
        return c["item_id"].to_numpy().astype(float)


class ShortScorer:
    name = "short"

    def score(self, query: FeedQuery, c: pl.DataFrame) -> np.ndarray:
        return np.zeros(max(c.height - 1, 0))


class TopK:
    name = "topk"

    def select(self, query: FeedQuery, c: pl.DataFrame) -> pl.DataFrame:
        return c.head(query.limit)


def _query() -> FeedQuery:
    return FeedQuery(user_id=1, limit=3, now=datetime(2026, 1, 1), session_id="s")


def _pipe(**kw: object) -> RankingPipeline:
    base: dict[str, object] = dict(
        name="t",
        query_hydrators=[],
        sources=[ListSource("a", [1, 2, 3, 4]), ListSource("b", [4, 5, 6])],
        hydrators=[AddAuthor()],
        filters=[OddFilter()],
        scorers=[IdScorer()],
        selector=TopK(),
    )
    base.update(kw)
    return RankingPipeline(**base)  # type: ignore[arg-type]


def test_page_is_filtered_scored_and_ordered() -> None:
    res = _pipe().run(_query())
    assert res.page["item_id"].to_list() == [6, 4, 2]
    assert res.page["position"].to_list() == [0, 1, 2]
    assert res.removed == {1: "odd", 3: "odd", 5: "odd"}


def test_duplicate_item_keeps_first_source() -> None:
    res = _pipe().run(_query())
    assert res.page.filter(pl.col("item_id") == 4)["source"].item() == "a"


def test_failing_and_slow_sources_fail_open() -> None:
    res = _pipe(sources=[BrokenSource(), SlowSource(), ListSource("a", [2, 4])]).run(_query())
    assert sorted(res.failed_sources) == ["broken", "slow"]
    assert res.page["item_id"].to_list() == [4, 2]


def test_hydrator_that_drops_rows_fails_loudly() -> None:
    with pytest.raises(ContractViolation, match="drop_rows"):
        _pipe(hydrators=[AddAuthor(), DropRows()]).run(_query())


def test_scorer_with_wrong_length_fails_loudly() -> None:
    with pytest.raises(ContractViolation, match="short"):
        _pipe(scorers=[ShortScorer()]).run(_query())
