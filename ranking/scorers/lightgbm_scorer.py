"""Scorer: the learned value model (LightGBM heads + lambdarank) with a hand-weighted fallback.

``score = sum(weight[head] * P(head | features)) + weight.ranker * lambdarank(features)``
(see :mod:`ranking.learned.value_model`). The features are the registry columns the candidate
hydrators added, read by :func:`features.registry.matrix` exactly as training reads the logged
values.

Experiment overrides (``FeedQuery.overrides``):

``ranker_model``
    a stored model version to score with instead of the promoted one (an A/B arm);
``value_weights``
    ``{head: weight}`` replacing some of the model's value weights (keys: the heads and
    ``ranker``).

Light then heavy (as X's home-mixer ranks): with ``heavy_top_k`` set, the lambdarank model
(one booster) scores every candidate, and the full value model (every head) scores only the
``heavy_top_k`` best of them; the others keep their light order, placed below the heavy ones.
A page shows ~20 clips, so the full model still orders every clip that can reach it, at a
fraction of the cost (each head costs about as much as the ranker on 1,000 candidates).
``heavy_top_k=None`` scores every candidate with every head.

A bad override is logged and ignored (the request is served with the promoted model and its
weights); experiments validate their arms when they are defined. When no model is promoted or
the promoted one does not load, the scorer returns the hand-weighted scores, so the page is
still served; :meth:`ranking.learned.serving.LearnedModels.health` reports the fallback.

The scorer records what it used in ``query.context.learned_ranker`` (a
:class:`~ranking.context.LearnedRankerUse`: model version and weights) for the explanation
stage.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import polars as pl

from ranking.context import LearnedRankerUse
from ranking.learned.registry import HAND_WEIGHTED
from ranking.learned.serving import LearnedModels
from ranking.learned.value_model import LearnedModelError, LearnedValueModel, ValueWeights
from ranking.pipeline import FeedQuery
from ranking.scorers.hand_weighted import HandWeightedScorer

logger = logging.getLogger(__name__)

DEFAULT_HEAVY_TOP_K = 200
WEIGHT_KEYS = tuple(ValueWeights.model_fields)


class OverrideError(ValueError):
    """An experiment override the learned ranker cannot use."""


def apply_value_weights(base: ValueWeights, override: Any) -> ValueWeights:
    """``base`` with the weights of an override dict replaced.

    Raises
    ------
    OverrideError
        When the override is not a dict of known keys to finite numbers (the message lists
        the valid keys).
    """
    if not override:
        return base
    if not isinstance(override, dict):
        msg = f"value_weights must be a dict of head -> weight, got {type(override).__name__}"
        raise OverrideError(msg)
    unknown = sorted(set(override) - set(WEIGHT_KEYS))
    if unknown:
        msg = f"unknown value_weights keys {unknown}; valid: {', '.join(WEIGHT_KEYS)}"
        raise OverrideError(msg)
    update: dict[str, float] = {}
    for k, v in override.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            msg = f"value_weights[{k!r}] must be a finite number, got {v!r}"
            raise OverrideError(msg)
        update[k] = float(v)
    return base.model_copy(update=update)


class LightGbmScorer:
    """Scores candidates with the learned value model (see the module docstring).

    Parameters
    ----------
    models
        The engine's learned models (lazily loaded).
    fallback
        The hand-weighted scorer used when no learned model can serve.
    """

    name = "learned_value"

    def __init__(
        self,
        models: LearnedModels,
        *,
        fallback: HandWeightedScorer | None = None,
        heavy_top_k: int | None = DEFAULT_HEAVY_TOP_K,
    ) -> None:
        if heavy_top_k is not None and heavy_top_k < 1:
            msg = f"heavy_top_k must be >= 1 or None, got {heavy_top_k}"
            raise ValueError(msg)
        self.models = models
        self.fallback = fallback or HandWeightedScorer()
        self.heavy_top_k = heavy_top_k

    def enabled(self, query: FeedQuery) -> bool:
        """When a learned model is promoted, or the request's experiment arm names one."""
        return bool(query.overrides.ranker_model) or self.models.serving_version() is not None

    def resolve(self, query: FeedQuery) -> tuple[LearnedValueModel | None, ValueWeights | None]:
        """The model and weights for this request (overrides applied; None: fall back)."""
        model: LearnedValueModel | None = None
        wanted = query.overrides.ranker_model
        if wanted:
            try:
                model = self.models.get(str(wanted))
            except LearnedModelError as exc:
                logger.warning(
                    "override ranker_model=%r unusable (%s); using promoted", wanted, exc
                )
        if model is None:
            model = self.models.serving()
        if model is None:
            return None, None
        weights = model.weights
        try:
            weights = apply_value_weights(weights, query.overrides.value_weights)
        except OverrideError as exc:
            logger.warning("override ignored: %s", exc)
        return model, weights

    def score(self, query: FeedQuery, candidates: pl.DataFrame) -> np.ndarray:
        """Return one value per candidate (hand-weighted scores when nothing learned serves)."""
        model, weights = self.resolve(query)
        if model is None or weights is None:
            query.context.learned_ranker = LearnedRankerUse(HAND_WEIGHTED)
            return np.asarray(self.fallback.score(query, candidates), dtype=np.float64)
        query.context.learned_ranker = LearnedRankerUse(model.version, weights.model_dump())
        x = model.matrix(candidates)
        k = self.heavy_top_k
        if k is None or len(x) <= k or model.ranker is None:
            values = model.value(x, weights)
        else:
            values = light_then_heavy(model, x, weights, k)
        return np.asarray(np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0))


def light_then_heavy(
    model: LearnedValueModel, x: np.ndarray, weights: ValueWeights, k: int
) -> np.ndarray:
    """Ranker on every row, the full value on the ``k`` best; the rest ranked below them.

    The rows outside the top ``k`` keep their ranker order and get values just below the
    lowest heavy value (spaced by the heavy values' spread), so later scorers that add to the
    score still see a sensible scale.
    """
    light = model.ranker_score(x)
    top = np.argpartition(-light, k - 1)[:k]
    values = np.empty(len(x))
    heavy = model.value(x[top], weights, ranker_scores=light[top])
    values[top] = heavy
    rest = np.ones(len(x), dtype=bool)
    rest[top] = False
    idx = np.flatnonzero(rest)
    order = np.argsort(-light[idx], kind="stable")
    spread = max(float(heavy.std()), 1e-3)
    step = np.empty(len(idx))
    step[order] = (np.arange(len(idx)) + 1.0) / len(idx)
    values[idx] = float(heavy.min()) - spread * step
    return values
