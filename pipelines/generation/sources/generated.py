"""Candidate source "made for your mood": generated clips close to the active mood, and the
clips the user asked the generator for."""

from __future__ import annotations

import numpy as np
import polars as pl

from ranking.pipeline import CANDIDATE_SCHEMA, FeedQuery
from ranking.state import FeedState

GENERATED_SOURCE = "generated"  # ranking.explain words it "made for your mood"


class GeneratedForMoodSource:
    """Generated clips scored by cosine to the active mood's facets, plus the user's own
    requested clips. Reads memory only.

    Parameters
    ----------
    state
        The serving state (``generated``, ``vectors``, ``author``).
    limit
        Most candidates returned.
    min_similarity
        Cosine below which a generated clip is not offered for a mood.
    """

    name = GENERATED_SOURCE
    runs_inline = True  # memory only: run in the request thread (see CandidateSource)

    def __init__(
        self,
        state: FeedState,
        *,
        limit: int = 30,
        min_similarity: float = 0.3,
        timeout_s: float = 0.2,
    ) -> None:
        self.state = state
        self.limit = limit
        self.min_similarity = min_similarity
        self.timeout_s = timeout_s

    def fetch(self, query: FeedQuery) -> pl.DataFrame:
        """Return generated candidates."""
        st = self.state
        # Without a mood only the user's own requests come this way (the ANN source already
        # offers generated clips close to the user's tastes, under their own label), so the
        # common no-mood page reads no vectors at all.
        targets = query.context.mood_vectors  # set by the steering hydrator
        with st.lock:
            rows = st.catalogue.generated_rows()
            if not targets:
                rows = rows[st.catalogue.author[rows] == query.user_id]
            if rows.size == 0:
                return pl.DataFrame(schema=CANDIDATE_SCHEMA)  # no ``drop``: a lazy query
            vecs = st.catalogue.vectors[rows] if targets else None
            own = st.catalogue.author[rows] == query.user_id
        if vecs is not None:
            sims = (vecs @ np.stack(targets).T).max(axis=1).astype(np.float64)
        else:
            sims = np.zeros(rows.size)
        keep = own | (sims >= self.min_similarity) if targets else own
        score = np.where(own, np.maximum(sims, 1.0), sims)
        idx = np.flatnonzero(keep)
        idx = idx[np.argsort(-score[idx], kind="stable")][: self.limit]
        return pl.DataFrame(
            {
                "item_id": st.catalogue.item_ids[rows[idx]].astype(np.int64),
                "source_score": score[idx].astype(np.float64),
            }
        )
