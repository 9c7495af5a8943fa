"""Candidate source: nearest clips to the user's taste vector in the vector index."""

from __future__ import annotations

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery
from ranking.sources._util import rows_to_candidates
from ranking.state import FeedState
from storage.index.base import SearchFilter, VectorIndex


class AnnUserVectorSource:
    """ANN search on the ``caption`` space with the user's decayed engagement vector.

    Safety and maturity are pushed into the index filter so the nearest neighbours are
    servable ones.
    """

    name = "ann_user_vector"

    def __init__(
        self,
        index: VectorIndex | None,
        state: FeedState,
        *,
        space: str = "caption",
        limit: int = 300,
        timeout_s: float = 0.25,
    ) -> None:
        self.index = index
        self.state = state
        self.space = space
        self.limit = limit
        self.timeout_s = timeout_s

    def enabled(self, query: FeedQuery) -> bool:
        """Only while the vector index is open (the feed serves without ANN otherwise)."""
        return self.index is not None

    def fetch(self, query: FeedQuery) -> pl.DataFrame:
        """Return the nearest clips to the user vector (none for a user without history)."""
        vec = query.context.user_vector
        if vec is None:
            return rows_to_candidates(self.state, np.zeros(0, dtype=np.int64), np.zeros(0))
        flt = SearchFilter(
            none_of={"safety_label": ["violative"]},
            max_values={"maturity": query.context.maturity_max},
        )
        assert self.index is not None  # enabled() checked it
        hits = self.index.search(self.space, vec, limit=self.limit, flt=flt)
        return pl.DataFrame(
            {
                "item_id": np.asarray([h[0] for h in hits], dtype=np.int64),
                "source_score": np.asarray([h[1] for h in hits], dtype=np.float64),
            }
        )
