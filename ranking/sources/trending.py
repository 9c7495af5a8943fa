"""Candidate source: clips with the highest engagement velocity over recent hours."""

from __future__ import annotations

import polars as pl

from ranking.pipeline import FeedQuery
from ranking.sources._util import rows_to_candidates
from ranking.state import FeedState


class TrendingSource:
    """Top clips by decayed positive-engagement velocity (6 h half-life)."""

    name = "trending"
    runs_inline = True  # memory only: run in the request thread (see CandidateSource)

    def __init__(self, state: FeedState, *, limit: int = 300, timeout_s: float = 0.2) -> None:
        self.state = state
        self.limit = limit
        self.timeout_s = timeout_s

    def fetch(self, query: FeedQuery) -> pl.DataFrame:
        """Return trending clips scored by velocity."""
        now = query.now_epoch
        rows = self.state.engagement.trending(now, k=max(self.limit, 500))[: self.limit]
        return rows_to_candidates(self.state, rows, self.state.engagement.velocity_now(now, rows))
