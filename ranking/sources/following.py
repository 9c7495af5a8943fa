"""Candidate source: recent clips from creators the user follows."""

from __future__ import annotations

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery
from ranking.sources._util import rows_to_candidates
from ranking.state import FeedState


class FollowingSource:
    """Newest clips of followed authors (at most ``per_author`` each, ``limit`` in all)."""

    name = "following"
    runs_inline = True  # memory only: run in the request thread (see CandidateSource)

    def __init__(
        self, state: FeedState, *, limit: int = 300, per_author: int = 20, timeout_s: float = 0.2
    ) -> None:
        self.state = state
        self.limit = limit
        self.per_author = per_author
        self.timeout_s = timeout_s

    def fetch(self, query: FeedQuery) -> pl.DataFrame:
        """Return followed authors' newest clips, scored by recency."""
        st = self.state
        rows: list[int] = []
        for author in query.context.following:
            rows.extend(st.catalogue.by_author.get(author, [])[-self.per_author :])
        if not rows:
            return rows_to_candidates(st, np.zeros(0, dtype=np.int64), np.zeros(0))
        r = np.asarray(rows, dtype=np.int64)
        created = st.catalogue.created[r]
        order = np.argsort(-created)[: self.limit]
        age_h = np.clip(query.now_epoch - created[order], 0, None) / 3600.0
        return rows_to_candidates(st, r[order], 1.0 / (1.0 + age_h / 24.0))
