"""Candidate source: the newest clips, so new work gets a first audience."""

from __future__ import annotations

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery
from ranking.sources._util import rows_to_candidates
from ranking.state import FeedState


class FreshSource:
    """Newest clips, scored by recency."""

    name = "fresh"
    runs_inline = True  # memory only: run in the request thread (see CandidateSource)

    def __init__(self, state: FeedState, *, limit: int = 150, timeout_s: float = 0.2) -> None:
        self.state = state
        self.limit = limit
        self.timeout_s = timeout_s

    def fetch(self, query: FeedQuery) -> pl.DataFrame:
        """Return the newest clips."""
        rows = self.state.catalogue.freshest(k=max(self.limit, 500))[: self.limit]
        age_h = np.clip(query.now_epoch - self.state.catalogue.created[rows], 0, None) / 3600.0
        return rows_to_candidates(self.state, rows, 1.0 / (1.0 + age_h))
