"""Author statistics: PageRank credibility, follower growth and engagement, as of a moment."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from features.author_stats import compute_author_stats, follow_edges, pagerank

T0 = datetime(2025, 6, 1)


def _follows(rows: list[tuple[int, int, datetime]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"follower_id": pl.Int64, "followee_id": pl.Int64, "created_at": pl.Datetime("us")},
        orient="row",
    )


def test_pagerank_ranks_the_author_everyone_follows_first() -> None:
    src = np.array([1, 2, 3, 4, 2])
    dst = np.array([9, 9, 9, 9, 3])
    ids, rank = pagerank(src, dst)
    assert ids[np.argmax(rank)] == 9
    assert abs(rank.mean() - 1.0) < 1e-9


def test_stats_at_a_moment_ignore_later_follows_and_events() -> None:
    follows = _follows([(1, 9, T0), (2, 9, T0 + timedelta(days=2)), (3, 8, T0)])
    events = pl.DataFrame(
        {
            "user_id": [1, 1, 2],
            "item_id": [100, 100, 100],
            "target_user_id": [None, None, None],
            "event_type": ["impression", "like", "like"],
            "ts": [T0, T0 + timedelta(hours=1), T0 + timedelta(days=3)],
            "watch_frac": [None, None, None],
        },
        schema_overrides={"ts": pl.Datetime("us"), "target_user_id": pl.Int64},
    )
    clips = pl.DataFrame({"item_id": [100, 200], "author_id": [9, 8]})
    edges = follow_edges(follows, events)
    before = compute_author_stats(edges, events, clips, now=T0 + timedelta(days=1))
    after = compute_author_stats(edges, events, clips, now=T0 + timedelta(days=4))
    b = dict(zip(before["author_id"], before["author_engagement_rate"], strict=True))
    a = dict(zip(after["author_id"], after["author_engagement_rate"], strict=True))
    assert a[9] > b[9]  # the like on day 3 counts only after day 3
    gb = dict(zip(before["author_id"], before["author_follower_growth_7d"], strict=True))
    ga = dict(zip(after["author_id"], after["author_follower_growth_7d"], strict=True))
    assert gb[9] == pytest.approx(np.log1p(1)) and ga[9] == pytest.approx(np.log1p(2))
    cb = dict(zip(before["author_id"], before["author_credibility"], strict=True))
    ca = dict(zip(after["author_id"], after["author_credibility"], strict=True))
    assert ca[9] > cb[9]
