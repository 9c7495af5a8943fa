"""Candidate hydrator: the candidate features from the retrievers of the serving ranker.

Adds every column of :data:`ranking.learned.candidate_features.FEATURE_NAMES` (declared in
:mod:`features.registry`: the retrievers' user x clip scores, norms and ranks, popularity,
the viewer's history size, friends' engagement, tag similarity) for **every** candidate of the
page, whichever source found it, from the retrievers saved with the serving model: the same
numbers the ranker saw in training for a (user, clip) pair. A clip or a person the retrievers
do not know gets ``NaN``, which the feature matrix reads as the registry default.

Enabled while the serving model carries retrievers (a ranker trained by the fold rule); the
impression side effect then logs these columns like any other feature, so a model later
trained on impressions reads them as they were at the impression.
"""

from __future__ import annotations

import polars as pl

from ranking.learned.candidate_features import FEATURE_NAMES, features_for_items
from ranking.learned.serving import LearnedModels
from ranking.pipeline import FeedQuery, set_columns


class RetrieverFeaturesHydrator:
    """Adds the candidate feature columns (see the module docstring).

    Parameters
    ----------
    models
        The engine's learned models; the promoted one's retrievers are read.
    """

    name = "retriever_features"

    FEATURES = FEATURE_NAMES

    def __init__(self, models: LearnedModels) -> None:
        self.models = models

    def enabled(self, query: FeedQuery) -> bool:
        """While the serving model was trained with retrievers."""
        model = self.models.serving()
        return model is not None and model.retrievers is not None

    def hydrate(self, query: FeedQuery, candidates: pl.DataFrame) -> pl.DataFrame:
        """Return the candidates with the candidate feature columns."""
        model = self.models.serving()
        if model is None or model.retrievers is None:
            return candidates
        cols = features_for_items(model.retrievers, query.user_id, candidates["item_id"].to_numpy())
        return set_columns(candidates, cols)
