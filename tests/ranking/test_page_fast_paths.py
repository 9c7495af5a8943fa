"""The page path's fast variants return exactly what the plain polars/numpy versions return."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime

import numpy as np
import polars as pl
import pytest

from ranking.pipeline import FeedQuery, RankingPipeline, set_columns
from ranking.post_hydrators.learned_explanations import CONTRIBUTIONS_DTYPE, contributions_series
from ranking.selectors.diverse_top_k import DiverseTopKSelector


def _query(limit: int = 10) -> FeedQuery:
    return FeedQuery(user_id=1, limit=limit, now=datetime(2026, 1, 1), session_id="s")


class InlineSource:
    """A memory-only source: records the thread it ran in."""

    runs_inline = True
    timeout_s = 0.5

    def __init__(self, name: str, ids: list[int]) -> None:
        self.name = name
        self.ids = ids
        self.thread: str | None = None

    def fetch(self, query: FeedQuery) -> pl.DataFrame:
        self.thread = threading.current_thread().name
        return pl.DataFrame({"item_id": self.ids, "source_score": [2.0] * len(self.ids)})


class PooledSource(InlineSource):
    runs_inline = False


class BrokenInlineSource:
    name = "broken_inline"
    runs_inline = True
    timeout_s = 0.5

    def fetch(self, query: FeedQuery) -> pl.DataFrame:
        raise RuntimeError("bad state")


class FirstK:
    name = "first_k"

    def select(self, query: FeedQuery, c: pl.DataFrame) -> pl.DataFrame:
        return c.head(query.limit)


class ConstScorer:
    name = "const"

    def score(self, query: FeedQuery, c: pl.DataFrame) -> np.ndarray:
        return np.zeros(c.height)


def _pipe(sources: list[object]) -> RankingPipeline:
    return RankingPipeline(
        name="t",
        query_hydrators=[],
        sources=sources,  # type: ignore[arg-type]
        hydrators=[],
        filters=[],
        scorers=[ConstScorer()],
        selector=FirstK(),
    )


def test_inline_source_runs_in_the_request_thread_and_pooled_one_does_not() -> None:
    inline, pooled = InlineSource("inline", [1, 2]), PooledSource("pooled", [3])
    res = _pipe([pooled, inline]).run(_query())
    assert inline.thread == threading.current_thread().name
    assert pooled.thread is not None and pooled.thread != inline.thread
    assert res.source_counts == {"pooled": 1, "inline": 2}


def test_declaration_order_decides_the_source_of_a_shared_item_whatever_runs_inline() -> None:
    # The pooled source is declared first, so it keeps item 2 although the inline one ran first.
    res = _pipe([PooledSource("pooled", [2, 3]), InlineSource("inline", [1, 2])]).run(_query())
    sources = dict(zip(res.page["item_id"].to_list(), res.page["source"].to_list(), strict=True))
    assert sources == {1: "inline", 2: "pooled", 3: "pooled"}


def test_a_failing_inline_source_is_dropped_and_the_page_still_comes_back() -> None:
    res = _pipe([BrokenInlineSource(), InlineSource("ok", [5])]).run(_query())
    assert res.failed_sources == ["broken_inline"]
    assert res.page["item_id"].to_list() == [5]


def test_set_columns_matches_with_columns() -> None:
    frame = pl.DataFrame({"item_id": [1, 2, 3], "score": [0.5, 0.1, 0.2]})
    values = {"score": np.array([3.0, 2.0, 1.0]), "flag": np.array([True, False, True])}
    expected = frame.with_columns([pl.Series(k, v) for k, v in values.items()])
    got = set_columns(frame, values)
    assert got.equals(expected)
    assert got.schema == expected.schema
    assert frame["score"].to_list() == [0.5, 0.1, 0.2]  # the input frame is not changed
    named = set_columns(frame, {"topic": pl.Series("other", ["a", "b", "c"])})
    assert named.columns == ["item_id", "score", "topic"]


def test_set_columns_on_an_empty_frame() -> None:
    empty = pl.DataFrame(schema={"item_id": pl.Int64})
    got = set_columns(empty, {"score": np.zeros(0)})
    assert got.equals(empty.with_columns(pl.lit(0.0).alias("score")))


def test_set_columns_rejects_a_column_of_the_wrong_length() -> None:
    with pytest.raises(pl.exceptions.ShapeError):
        set_columns(pl.DataFrame({"a": [1, 2]}), {"b": np.zeros(3)})


def test_contributions_series_matches_polars_inference() -> None:
    contribs: list[list[dict[str, float | str]]] = [
        [{"feature": "like_rate", "value": 0.25}, {"feature": "age_hours", "value": -0.1}],
        [],
        [{"feature": "follows_author", "value": 1.5}],
    ]
    got = contributions_series(contribs)
    expected = pl.Series("_contributions", contribs, dtype=CONTRIBUTIONS_DTYPE)
    assert got.dtype == CONTRIBUTIONS_DTYPE
    assert got.equals(expected)
    assert contributions_series([]).equals(pl.Series("_contributions", [], CONTRIBUTIONS_DTYPE))


def _reference_diverse_top_k(
    authors: list[int], topics: list[str], scores: list[float], limit: int, cap: int, decay: float
) -> list[int]:
    """The greedy pick without skipping capped authors (the selector's original loop)."""
    floor = min(scores)
    adj = [s - floor + 1e-6 for s in scores]
    per_author: Counter[int] = Counter()
    per_topic: Counter[str] = Counter()
    chosen: list[int] = []
    remaining = list(range(len(scores)))
    while remaining and len(chosen) < limit:
        best_i, best_v = -1, -1.0
        for j, i in enumerate(remaining):
            if per_author[authors[i]] >= cap:
                continue
            v = adj[i] * decay ** per_topic[topics[i]]
            if v > best_v:
                best_i, best_v = j, v
            if adj[i] <= best_v:
                break
        if best_i < 0:
            break
        i = remaining.pop(best_i)
        chosen.append(i)
        per_author[authors[i]] += 1
        per_topic[topics[i]] += 1
    return chosen


@pytest.mark.parametrize("seed", range(6))
def test_diverse_top_k_picks_what_the_plain_greedy_loop_picks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    frame = pl.DataFrame(
        {
            "item_id": np.arange(n),
            "author_id": rng.integers(0, 8 + seed * 5, n),  # few authors: many hit the cap
            "topic": rng.choice(["a", "b", "c", "d"], n),
            "score": np.sort(rng.standard_normal(n))[::-1],
        }
    )
    selector = DiverseTopKSelector(max_per_author=2, topic_decay=0.85)
    page = selector.select(_query(limit=20), frame)
    expected = _reference_diverse_top_k(
        frame["author_id"].to_list(),
        frame["topic"].to_list(),
        frame["score"].to_list(),
        20,
        2,
        0.85,
    )
    assert page["item_id"].to_list() == expected
