"""Friends' creations: the source finds them and the scorer lifts them."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery
from ranking.scorers.friends_connection import FriendsConnectionScorer
from ranking.sources.friends_creations import FriendsCreationsSource
from ranking.state import FeedState


def _query(friends: set[int], seen: set[int] | None = None) -> FeedQuery:
    q = FeedQuery(user_id=1, limit=10, now=datetime(2026, 3, 1), session_id="s")
    q.context.friends = friends
    q.context.seen = seen or set()
    return q


def test_source_finds_cameos_of_friends_and_remixes_of_their_clips() -> None:
    st = FeedState(dim=4)
    st.add_clips(
        pl.DataFrame(
            {
                "item_id": [10, 11, 12, 13, 14],
                "author_id": [2, 5, 5, 6, 1],
                "caption": "c",
                "cameo_user_ids": [[], [2], [7], [], [2]],
                "remix_of": [None, None, None, 10, None],
            },
            schema_overrides={"remix_of": pl.Int64},
        )
    )
    src = FriendsCreationsSource(st)
    got = src.fetch(_query({2}))
    # 11 shows friend 2, 13 remixes friend 2's clip; 12 shows a stranger; 14 is the user's own.
    assert sorted(got["item_id"].to_list()) == [11, 13]
    assert src.fetch(_query({2}, seen={11}))["item_id"].to_list() == [13]
    assert src.fetch(_query(set())).height == 0
    # Clips added later are indexed on the next request.
    st.add_clips(
        pl.DataFrame({"item_id": [15], "author_id": [8], "caption": "c", "cameo_user_ids": [[2]]})
    )
    assert 15 in src.fetch(_query({2}))["item_id"].to_list()


def test_scorer_lifts_friends_creations_by_its_weight_in_standard_deviations() -> None:
    cands = pl.DataFrame(
        {
            "score": [3.0, 2.0, 1.0, 0.0],
            "friend_cameo": [0.0, 0.0, 1.0, 0.0],
            "remix_of_friend": [0.0, 0.0, 0.0, 1.0],
        }
    )
    sc = FriendsConnectionScorer(weight=1.0)
    assert sc.enabled(_query({2})) and not sc.enabled(_query(set()))
    out = sc.score(_query({2}), cands)
    z = (np.array([3.0, 2.0, 1.0, 0.0]) - 1.5) / np.std([3.0, 2.0, 1.0, 0.0])
    assert np.allclose(out, z + np.array([0, 0, 1, 1]))
