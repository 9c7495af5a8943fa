"""Scorer: newer is better (the score is minus the age in hours)."""

from __future__ import annotations

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery


class RecencyScorer:
    """Scores ``-age_hours``: the only ranking a non-personalized feed uses."""

    name = "recency"

    def score(self, query: FeedQuery, candidates: pl.DataFrame) -> np.ndarray:
        """Return minus the age in hours."""
        return -candidates["age_hours"].cast(pl.Float64).fill_null(0.0).to_numpy()
