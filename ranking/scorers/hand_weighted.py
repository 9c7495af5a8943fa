"""Scorer: a hand-weighted value model over simple features (the fallback for the learned one)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from ranking.pipeline import FeedQuery


class HandWeights(BaseModel):
    """Weights of the hand-weighted value model; connection and creation are favoured,
    see-less and reports weigh strongly against."""

    model_config = ConfigDict(extra="forbid")

    user_clip_cosine: float = 2.0
    follows_author: float = 0.8
    author_is_friend: float = 0.6
    friends_engaged: float = 0.4
    friend_cameo: float = 0.5
    remix_of_friend: float = 0.4
    completion_rate: float = 1.0
    like_rate: float = 4.0
    comment_rate: float = 3.0
    remix_rate: float = 6.0
    share_rate: float = 5.0
    skip_rate: float = -1.5
    see_less_rate: float = -20.0
    report_rate: float = -40.0
    velocity_log: float = 0.15
    freshness: float = 0.3
    source_score: float = 0.0


class HandWeightedScorer:
    """Scores ``sum(weight * feature)``; freshness is ``1 / (1 + age_hours / 24)``."""

    name = "hand_weighted"

    def __init__(
        self,
        weights: HandWeights | None = None,
        *,
        unless: Callable[[FeedQuery], bool] | None = None,
    ) -> None:
        self.weights = weights or HandWeights()
        self.unless = unless

    def enabled(self, query: FeedQuery) -> bool:
        """Unless ``unless(query)`` says another scorer serves (the learned one, when promoted)."""
        return self.unless is None or not self.unless(query)

    def score(self, query: FeedQuery, candidates: pl.DataFrame) -> np.ndarray:
        """Return one value per candidate."""
        w = self.weights.model_dump()
        fresh = w.pop("freshness")
        cols = set(candidates.columns)
        names = [n for n, weight in w.items() if weight and n in cols]
        total = np.zeros(candidates.height)
        if names:
            # One polars pass and one matrix product instead of a column loop.
            x = candidates.select(pl.col(n).cast(pl.Float64).fill_null(0.0) for n in names)
            total += x.to_numpy() @ np.array([w[n] for n in names], dtype=np.float64)
        total += fresh / (1.0 + candidates["age_hours"].to_numpy() / 24.0)
        return total
