"""Candidate source: clips from creators followed by the people the user follows."""

from __future__ import annotations

from collections import Counter

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery
from ranking.signals import Signal
from ranking.sources._util import rows_to_candidates
from ranking.state import FeedState


class FriendsOfFriendsSource:
    """Authors two hops away, weighted by how many followees follow them."""

    name = "friends_of_friends"
    runs_inline = True  # memory only: run in the request thread (see CandidateSource)

    def __init__(
        self,
        state: FeedState,
        *,
        limit: int = 200,
        max_followees: int = 100,
        max_authors: int = 40,
        per_author: int = 5,
        timeout_s: float = 0.2,
    ) -> None:
        self.state = state
        self.limit = limit
        self.max_followees = max_followees
        self.max_authors = max_authors
        self.per_author = per_author
        self.timeout_s = timeout_s

    def enabled(self, query: FeedQuery) -> bool:
        """Off while the person turned friends' activity off (who their friends follow)."""
        return query.context.signals.allows(Signal.FRIENDS_ACTIVITY)

    def fetch(self, query: FeedQuery) -> pl.DataFrame:
        """Return recent clips of the most-shared second-hop authors."""
        st = self.state
        following = query.context.following
        votes: Counter[int] = Counter()
        for f in list(following)[: self.max_followees]:
            votes.update(st.graph.following.get(f, ()))
        for a in [*following, query.user_id]:
            votes.pop(a, None)
        rows: list[int] = []
        scores: list[float] = []
        for author, n in votes.most_common(self.max_authors):
            recent = st.catalogue.by_author.get(author, [])[-self.per_author :]
            rows.extend(recent)
            scores.extend([float(n)] * len(recent))
        row_arr = np.asarray(rows, dtype=np.int64)
        s = np.asarray(scores, dtype=np.float64)
        order = np.argsort(-s, kind="stable")[: self.limit]
        return rows_to_candidates(st, row_arr[order], s[order])
