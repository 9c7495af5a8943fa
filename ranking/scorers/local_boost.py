"""Scorer: a modest boost for clips made in the person's city."""

from __future__ import annotations

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery, incoming_scores


class LocalBoostScorer:
    """``score + weight * sd(score) * same_city``.

    Scaled by the spread of the incoming scores, as the other blending scorers are, so
    ``weight`` reads as "how many standard deviations a local clip gains" whatever the value
    model's scale: 0.3 lifts a local clip over middling ones without letting locality outrank
    taste. Enabled only while the request has a city (the person allows location and one is
    known); otherwise the score passes through untouched.
    """

    name = "local_boost"

    def __init__(self, *, weight: float = 0.3) -> None:
        self.weight = weight

    def enabled(self, query: FeedQuery) -> bool:
        """Only for a request with a usable city."""
        return self.weight != 0.0 and query.context.signals.local_city is not None

    def score(self, query: FeedQuery, candidates: pl.DataFrame) -> np.ndarray:
        """Return the score with the local boost added."""
        incoming = incoming_scores(candidates)
        if candidates.height == 0 or "same_city" not in candidates.columns:
            return incoming
        same = candidates["same_city"].cast(pl.Float64).fill_null(0.0).to_numpy()
        spread = float(np.std(incoming)) or 1.0
        return incoming + self.weight * spread * same
