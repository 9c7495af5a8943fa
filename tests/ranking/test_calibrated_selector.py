"""The calibrated selector: a page's topic mix follows the user's interest mix."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import polars as pl

from ranking.pipeline import FeedQuery
from ranking.query_hydrators.topic_mix import TopicMix
from ranking.selectors.calibrated import CalibratedSelector, calibration_kl
from ranking.selectors.diverse_top_k import DiverseTopKSelector


def _candidates() -> pl.DataFrame:
    """60 candidates: the 20 finance clips score highest, then cooking, then travel."""
    topics = ["finance"] * 20 + ["cooking"] * 20 + ["travel"] * 20
    return pl.DataFrame(
        {
            "item_id": list(range(60)),
            "author_id": list(range(60)),
            "topic": topics,
            "score": [10.0 - 0.1 * i for i in range(60)],
        }
    )


def _query(mix: TopicMix | None) -> FeedQuery:
    q = FeedQuery(user_id=1, limit=10, now=datetime(2026, 3, 1), session_id="s")
    if mix is not None:
        q.context.put(mix)
    return q


def test_a_thirty_percent_finance_user_gets_about_thirty_percent_finance() -> None:
    mix = TopicMix({"finance": 0.3, "cooking": 0.5, "travel": 0.2})
    inner = DiverseTopKSelector(max_per_author=2, topic_decay=1.0)
    page = CalibratedSelector(inner).select(_query(mix), _candidates())
    counts = Counter(page["topic"].to_list())
    assert page.height == 10
    assert 2 <= counts["finance"] <= 4
    assert counts["cooking"] >= 4
    uncalibrated = inner.select(_query(mix), _candidates())
    assert Counter(uncalibrated["topic"].to_list())["finance"] == 10
    assert calibration_kl(mix.shares, page["topic"].to_list()) < calibration_kl(
        mix.shares, uncalibrated["topic"].to_list()
    )


def test_room_to_explore_and_the_author_cap() -> None:
    mix = TopicMix({"finance": 1.0})
    cands = _candidates().with_columns(pl.Series("author_id", [i % 3 for i in range(60)]))
    page = CalibratedSelector(DiverseTopKSelector(), explore=0.3, max_per_author=2).select(
        _query(mix), cands
    )
    assert max(Counter(page["author_id"].to_list()).values()) <= 2
    sel = CalibratedSelector(DiverseTopKSelector(), explore=0.3)
    page = sel.select(_query(mix), _candidates())
    counts = Counter(page["topic"].to_list())
    assert counts["finance"] >= 6 and counts["finance"] < 10  # mostly finance, some others


def test_without_a_mix_or_with_calibration_off_the_inner_selector_picks() -> None:
    inner = DiverseTopKSelector(max_per_author=2, topic_decay=1.0)
    sel = CalibratedSelector(inner)
    expected = inner.select(_query(None), _candidates())["item_id"].to_list()
    assert sel.select(_query(None), _candidates())["item_id"].to_list() == expected
    off = TopicMix({"cooking": 1.0}, calibrate=False)
    assert sel.select(_query(off), _candidates())["item_id"].to_list() == expected


def test_steering_the_mix_adds_more_and_removes_never() -> None:
    mix = TopicMix({"finance": 0.5, "cooking": 0.5})
    mix.steer(more=["dance"], less=["finance"], never=["cooking"])
    assert set(mix.shares) == {"finance", "dance"}
    assert mix.shares == {"finance": 0.125, "dance": 0.25}
    # What "less" and "never" took is left free, not handed to the other topics.
    assert abs(mix.free - 0.625) < 1e-9
    one = TopicMix({"science": 0.92, "news": 0.08})
    one.steer(less=["science"])
    assert one.shares["science"] == 0.23 and one.shares["news"] == 0.08
    full = TopicMix({"cooking": 1.0})
    full.steer(more=["dance"])
    assert abs(sum(full.shares.values()) - 1.0) < 1e-9 and full.shares["dance"] == 0.2
