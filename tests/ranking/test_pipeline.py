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


class Only:
    """A component wrapper enabled when the request is exposed to experiment ``key``."""

    def __init__(self, key: str) -> None:
        self.key = key

    def enabled(self, query: FeedQuery) -> bool:
        return self.key in query.context.experiments


class GatedSource(ListSource, Only):
    def __init__(self, name: str, ids: list[int], key: str) -> None:
        ListSource.__init__(self, name, ids)
        Only.__init__(self, key)


class NegScorer(Only):
    name = "neg"

    def score(self, query: FeedQuery, c: pl.DataFrame) -> np.ndarray:
        return -c["item_id"].to_numpy().astype(float)


class Label:
    name = "label"

    def hydrate(self, query: FeedQuery, page: pl.DataFrame) -> pl.DataFrame:
        return page.with_columns(pl.lit("x").alias("label"))


class Record:
    def __init__(self, name: str, *, inline: bool) -> None:
        self.name = name
        self.runs_inline = inline
        self.pages: list[list[int]] = []

    def run(self, query: FeedQuery, page: pl.DataFrame) -> None:
        self.pages.append(page["item_id"].to_list())


def test_disabled_components_are_skipped_and_reported() -> None:
    pipe = _pipe(
        sources=[ListSource("a", [2, 4]), GatedSource("extra", [6, 8], "more")],
        scorers=[IdScorer(), NegScorer("flip")],
    )
    plain = pipe.run(_query())
    assert plain.page["item_id"].to_list() == [4, 2]
    assert plain.skipped == ["src.extra", "s.neg"]
    q = _query()
    q.context.experiments.update(more="on", flip="on")
    both = pipe.run(q)
    assert both.page["item_id"].to_list() == [2, 4, 6]
    assert both.skipped == []


def test_post_hydrator_annotates_the_page_and_must_keep_its_rows() -> None:
    res = _pipe(post_hydrators=[Label()]).run(_query())
    assert res.page["label"].to_list() == ["x", "x", "x"]
    with pytest.raises(ContractViolation, match="drop_rows"):
        _pipe(post_hydrators=[DropRows()]).run(_query())


def test_dry_run_runs_no_side_effect_and_inline_ones_finish_before_the_page_returns() -> None:
    inline, pooled = Record("count", inline=True), Record("log", inline=False)
    pipe = _pipe(side_effects=[inline, pooled])
    dry = pipe.run(_query(), dry_run=True)
    assert dry.effects == [] and inline.pages == [] and pooled.pages == []
    res = pipe.run(_query())
    assert inline.pages == [[6, 4, 2]]  # already done: it ran in the request thread
    for f in res.effects:
        f.result()
    assert pooled.pages == [[6, 4, 2]]


def test_describe_lists_every_stage_in_run_order() -> None:
    pipe = _pipe(
        sources=[ListSource("a", [1]), GatedSource("extra", [2], "more")],
        post_hydrators=[Label()],
        side_effects=[Record("log", inline=False)],
    )
    assert [str(e) for e in pipe.describe()] == [
        "source: a [ListSource]",
        "source: extra [GatedSource] (conditional)",
        "hydrator: author [AddAuthor]",
        "filter: odd [OddFilter]",
        "scorer: id [IdScorer]",
        "selector: topk [TopK]",
        "post_hydrator: label [Label]",
        "side_effect: log [Record]",
    ]
