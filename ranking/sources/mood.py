"""Candidate source: clips close to the active mood's facets."""

from __future__ import annotations

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery
from ranking.state import FeedState
from storage.index.base import SearchFilter, VectorIndex


class MoodSource:
    """For each facet (and "only" phrase) of the active moods: an ANN search in the index with
    the facet's expanded query vector, plus the facet's best clips by expanded concept score
    (hashtag and kNN-graph propagation find clips whose titles do not name the concept).
    Results are merged keeping each clip's best score. Returns nothing without a mood."""

    name = "mood"

    def __init__(
        self,
        index: VectorIndex | None,
        state: FeedState,
        *,
        space: str = "caption",
        limit: int = 400,
        timeout_s: float = 0.25,
    ) -> None:
        self.index = index
        self.state = state
        self.space = space
        self.limit = limit
        self.timeout_s = timeout_s

    def fetch(self, query: FeedQuery) -> pl.DataFrame:
        """Return merged facet neighbours."""
        sc = query.context.get("steering")
        concepts = [s for m in (sc.moods if sc else []) for s in (*m.facets, *m.restrict_to)]
        if not concepts:
            return pl.DataFrame(schema={"item_id": pl.Int64, "source_score": pl.Float64})
        per = max(self.limit // len(concepts), 20)
        best: dict[int, float] = {}
        flt = SearchFilter(
            none_of={"safety_label": ["violative"]},
            max_values={"maturity": int(query.context.get("maturity_max", 1))},
        )
        ids = self.state.item_ids
        for s in concepts:
            if self.index is not None:
                for item, score in self.index.search(self.space, s.vector, limit=per, flt=flt):
                    best[int(item)] = max(best.get(int(item), -1.0), float(score))
            rows = s.top_rows[:per]
            for item, z in zip(ids[rows].tolist(), s.z[rows].tolist(), strict=True):
                # Map the calibrated z onto the cosine range so the two kinds of hits compare.
                best[int(item)] = max(best.get(int(item), -1.0), min(1.0, z / 10.0))
        return pl.DataFrame(
            {
                "item_id": np.fromiter(best.keys(), dtype=np.int64, count=len(best)),
                "source_score": np.fromiter(best.values(), dtype=np.float64, count=len(best)),
            }
        )
