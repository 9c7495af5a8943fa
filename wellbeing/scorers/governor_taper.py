"""Scorer: as the time budget runs out, calmer, lower-intensity and connected clips rise."""

from __future__ import annotations

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery, incoming_scores
from wellbeing.service import GovernorView


class GovernorTaperScorer:
    """``score + strength * taper * sd(score) * (calm + connected)``.

    ``taper`` is the governor's 0..1 (0 until ``taper_start_fraction`` of the tightest budget
    is used, 1 at the limit); ``calm = 3 * (0.5 - intensity)``; ``connected`` is 1 for clips
    of followed creators or friends, or with a friend's cameo, else 0. ``sd(score)`` keeps the
    push in units of the incoming score's spread, whatever scorer came before. ``strength``
    defaults to the package setting and is overridden per request by
    ``query.overrides.governor_taper``. With no taper the score passes through unchanged.
    """

    name = "governor_taper"

    def __init__(self, *, strength: float = 1.0) -> None:
        self.strength = strength

    def score(self, query: FeedQuery, candidates: pl.DataFrame) -> np.ndarray:
        """Return the tapered score."""
        incoming = incoming_scores(candidates)
        view = query.context.get(GovernorView)
        taper = float(view.decision.taper) if view is not None else 0.0
        override = query.overrides.governor_taper
        strength = self.strength if override is None else override
        if taper <= 0.0 or strength <= 0.0 or candidates.height == 0:
            return incoming

        def col(name: str, default: float) -> np.ndarray:
            if name not in candidates.columns:
                return np.full(candidates.height, default)
            return candidates[name].cast(pl.Float64).fill_null(default).to_numpy()

        calm = 3.0 * (0.5 - col("intensity", 0.5))
        connected = np.maximum.reduce(
            [col("follows_author", 0.0), col("author_is_friend", 0.0), col("friend_cameo", 0.0)]
        )
        spread = float(np.std(incoming)) or 1.0
        return np.asarray(incoming + strength * taper * spread * (calm + connected))
