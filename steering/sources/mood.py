"""Candidate source: clips close to the active mood's facets."""

from __future__ import annotations

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery
from ranking.state import FeedState
from steering.query_hydrators.active_mood import SteeringContext
from storage.index.base import SearchFilter, VectorIndex


class MoodSource:
    """For each facet (and "only" phrase) of the active moods: the facet's nearest clips by
    expanded concept score, an exact search over the whole catalogue done once when the mood
    was set (hashtag and kNN-graph propagation find clips whose titles do not name the
    concept), plus an ANN search in the index with the facet's expanded query vector when clips
    were indexed after that (only ANN can reach them). Results are merged keeping each clip's
    best score; at most ``limit`` per request from the concept ranking. Returns nothing
    without a mood."""

    name = "mood"

    def __init__(
        self,
        index: VectorIndex | None,
        state: FeedState,
        *,
        space: str = "caption",
        limit: int = 300,
        ann_limit: int = 50,
        timeout_s: float = 0.25,
    ) -> None:
        self.index = index
        self.state = state
        self.space = space
        self.limit = limit
        self.ann_limit = ann_limit
        self.timeout_s = timeout_s

    def fetch(self, query: FeedQuery) -> pl.DataFrame:
        """Return merged facet neighbours."""
        sc = query.context.get(SteeringContext)
        concepts = [s for m in (sc.moods if sc else []) for s in (*m.facets, *m.restrict_to)]
        if not concepts:
            return pl.DataFrame(schema={"item_id": pl.Int64, "source_score": pl.Float64})
        per = max(self.limit // len(concepts), 20)
        ids = np.asarray(self.state.catalogue.item_ids)
        n_now = len(ids)
        items: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        flt = SearchFilter(
            none_of={"safety_label": ["violative"]},
            max_values={"maturity": query.context.maturity_max},
        )
        for s in concepts:
            rows = s.top_rows[:per]
            items.append(ids[rows].astype(np.int64))
            # Map the calibrated z onto the cosine range so the two kinds of hits compare.
            scores.append(np.minimum(1.0, s.z[rows].astype(np.float64) / 10.0))
            if self.index is not None and s.n_rows < n_now:
                # Clips indexed after the concept was scored are only reachable by ANN.
                hits = self.index.search(
                    self.space, s.vector, limit=min(per, self.ann_limit), flt=flt
                )
                if hits:
                    items.append(np.fromiter((int(i) for i, _ in hits), np.int64, len(hits)))
                    scores.append(np.fromiter((float(v) for _, v in hits), np.float64, len(hits)))
        all_items = np.concatenate(items)
        all_scores = np.concatenate(scores)
        # Keep each clip's best score: sort by score, then the first of each id.
        order = np.argsort(-all_scores, kind="stable")
        uniq, first = np.unique(all_items[order], return_index=True)
        return pl.DataFrame(
            {"item_id": uniq, "source_score": all_scores[order][first]},
            schema={"item_id": pl.Int64, "source_score": pl.Float64},
        )
