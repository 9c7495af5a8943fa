"""Scorer: the satisfaction head of the value model (predicted survey answer per clip)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery, incoming_scores
from ranking.signals import Signal

if TYPE_CHECKING:
    from wellbeing.satisfaction import SatisfactionModel
    from wellbeing.service import SatisfactionService


class SatisfactionHeadScorer:
    """``score + weight * sd(score) * head`` where ``head`` is the change in predicted answer
    (1-5 points) a clip brings to a session, from the satisfaction model
    (:meth:`~wellbeing.satisfaction.SatisfactionModel.clip_head`).

    ``weight`` defaults to the package setting (``STEERFEED_WELLBEING_SATISFACTION_WEIGHT``)
    and is overridden per request by ``query.overrides.satisfaction_weight``; 0, or no
    fitted model yet, passes the score through unchanged, and so does a person who turned
    the satisfaction model off in their data controls.
    """

    name = "satisfaction_head"

    def __init__(self, satisfaction: SatisfactionService, *, weight: float = 0.5) -> None:
        self.satisfaction = satisfaction
        self.weight = weight

    def score(self, query: FeedQuery, candidates: pl.DataFrame) -> np.ndarray:
        """Return the score with the satisfaction head added."""
        incoming = incoming_scores(candidates)
        weight = self._weight(query)
        model = self._model()
        if (
            model is None
            or weight == 0.0
            or candidates.height == 0
            or not query.context.signals.allows(Signal.SATISFACTION_MODEL)
        ):
            return incoming
        head = model.clip_head(candidates)
        spread = float(np.std(incoming)) or 1.0
        return incoming + weight * spread * head

    def _weight(self, query: FeedQuery) -> float:
        override = query.overrides.satisfaction_weight
        return self.weight if override is None else override

    def _model(self) -> SatisfactionModel | None:
        return self.satisfaction.model


class LongTermHeadScorer(SatisfactionHeadScorer):
    """The long-term head: ``score + weight * sd(score) * head`` where ``head`` is the change in
    the predicted six-month answer a clip brings to the mix a person watches, from the
    surrogate model (:func:`~wellbeing.satisfaction.surrogate_rows`; fitted by the
    ``satisfaction`` job on six-month answers and the weeks before them). ``weight`` is
    ``STEERFEED_WELLBEING_LONG_TERM_WEIGHT``; 0, no fitted model, or the satisfaction model
    turned off in the person's data controls passes the score through unchanged."""

    name = "long_term_head"

    def _weight(self, query: FeedQuery) -> float:
        return self.weight

    def _model(self) -> SatisfactionModel | None:
        return self.satisfaction.long_term
