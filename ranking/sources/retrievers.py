"""Candidate source: the candidates of the retrievers the serving ranker was trained with.

A ranker trained by the fold rule (:mod:`ranking.learned.history_training`) learned to order
the union of its retrievers' top clips (EASE, two collaborative factorisations, item kNN,
RP3beta, friends' clips, the most popular): this source gives a page the same candidates.
Enabled while the serving model carries retrievers; memory only, so it runs in the request
thread.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ranking.learned.candidate_features import user_candidates
from ranking.learned.serving import LearnedModels
from ranking.pipeline import FeedQuery


class RetrieversSource:
    """The serving model's retriever candidates for the user (source score: EASE's score).

    Parameters
    ----------
    models
        The engine's learned models; the promoted one's retrievers are read.
    """

    name = "retrievers"
    runs_inline = True  # memory only: run in the request thread (see CandidateSource)

    def __init__(self, models: LearnedModels, *, timeout_s: float = 0.2) -> None:
        self.models = models
        self.timeout_s = timeout_s

    def enabled(self, query: FeedQuery) -> bool:
        """While the serving model was trained with retrievers."""
        model = self.models.serving()
        return model is not None and model.retrievers is not None

    def fetch(self, query: FeedQuery) -> pl.DataFrame:
        """Return the retrievers' candidates for the user (none for someone they do not know)."""
        model = self.models.serving()
        if model is None or model.retrievers is None:
            items, scores = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        else:
            items, scores = user_candidates(model.retrievers, query.user_id)
        return pl.DataFrame(
            {"item_id": items.astype(np.int64), "source_score": scores.astype(np.float64)}
        )
