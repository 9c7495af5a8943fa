"""Scorer: negative feedback on a topic (see less, skips, reports) ranks its clips down."""

from __future__ import annotations

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery, incoming_scores
from ranking.query_hydrators.topic_mix import TopicMix


class TasteFeedbackScorer:
    """``z(incoming) - weight * (1 - exp(-sensitivity * negative(topic)))``: the incoming score
    as a z-score over the candidates, minus a demotion that grows with the decayed negative
    feedback on the clip's topic (:attr:`TopicMix.against`) and saturates at ``weight``
    standard deviations. One "see less" on a topic costs its clips ~0.7 sd at the defaults,
    six ~2.5 sd. Without negative feedback the incoming score passes through unchanged."""

    name = "taste_feedback"

    def __init__(self, *, weight: float = 3.0, sensitivity: float = 0.3) -> None:
        self.weight = weight
        self.sensitivity = sensitivity

    def enabled(self, query: FeedQuery) -> bool:
        """Only when the user gave negative feedback recently."""
        mix = query.context.get(TopicMix)
        return mix is not None and bool(mix.against)

    def score(self, query: FeedQuery, candidates: pl.DataFrame) -> np.ndarray:
        """Return the demoted score."""
        incoming = incoming_scores(candidates)
        mix = query.context.get(TopicMix)
        if mix is None or not mix.against or "topic" not in candidates.columns:
            return incoming
        against = mix.against
        neg = np.fromiter(
            (against.get(t or "", 0.0) for t in candidates["topic"].to_list()),
            np.float64,
            candidates.height,
        )
        if not neg.any():
            return incoming
        sd = float(np.std(incoming))
        z = (incoming - float(np.mean(incoming))) / sd if sd > 1e-12 else incoming * 0.0
        return z - self.weight * (1.0 - np.exp(-self.sensitivity * neg))
