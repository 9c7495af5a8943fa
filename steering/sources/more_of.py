"""Candidate source: clips of the topics a user asked to see more of (standing ``more_of``)."""

from __future__ import annotations

import threading

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery
from ranking.state import FeedState
from steering.concepts import ConceptScores
from steering.filters.mood_exclusions import LEXICAL_Z
from steering.query_hydrators.active_mood import SteeringContext

_EMPTY = {"item_id": pl.Int64, "source_score": pl.Float64}


class ConceptBestRows:
    """The ``limit`` best catalogue rows of a concept, those that name it (topics, hashtags,
    caption words) first, then by calibrated score: the expansion can drift onto clips of
    another topic on a small catalogue, and a clip that names the topic is the person's own
    word. Cached per concept object (a catalogue scan; the concept index makes a new object
    when the catalogue grows)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[ConceptScores, np.ndarray]] = {}

    def __call__(self, c: ConceptScores) -> np.ndarray:
        """The best rows of ``c``, named clips first."""
        with self._lock:
            hit = self._cache.get(c.text)
            if hit is not None and hit[0] is c:
                return hit[1]
        # Named clips first (a margin above any calibrated z), then by z.
        score = c.z.astype(np.float64) + 100.0 * c.lexical
        k = min(self.limit, len(score))
        rows = np.argpartition(-score, k - 1)[:k] if k else np.zeros(0, dtype=np.int64)
        rows = rows[np.argsort(-score[rows], kind="stable")].astype(np.int64)
        with self._lock:
            if len(self._cache) >= 256:
                self._cache.clear()
            self._cache[c.text] = (c, rows)
        return rows


class MoreOfSource:
    """For each standing ``more_of`` topic: its ``limit`` best clips (:class:`ConceptBestRows`).
    A topic the user barely watches has few clips among the other sources' candidates, so a
    boost alone cannot bring it onto the page ("more of dance" moved dance from 1 to 2 of 20
    without this source). Reads memory only; returns nothing without a ``more_of`` topic."""

    name = "more_of"
    timeout_s = 0.25
    runs_inline = True

    def __init__(self, state: FeedState, *, limit: int = 60) -> None:
        self.state = state
        self.best_rows = ConceptBestRows(limit)

    def enabled(self, query: FeedQuery) -> bool:
        """Only while the user has a ``more_of`` topic."""
        sc = query.context.get(SteeringContext)
        return sc is not None and bool(sc.more)

    def fetch(self, query: FeedQuery) -> pl.DataFrame:
        """Return the topics' best clips, each with its best score mapped onto [0, 1]."""
        sc = query.context.get(SteeringContext)
        if sc is None or not sc.more:
            return pl.DataFrame(schema=_EMPTY)
        ids = np.asarray(self.state.catalogue.item_ids)
        items: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        for c in sc.more:
            rows = self.best_rows(c)
            rows = rows[rows < len(ids)]
            items.append(ids[rows].astype(np.int64))
            named = LEXICAL_Z * c.lexical[rows].astype(np.float64)
            scores.append(np.minimum(1.0, np.maximum(c.z[rows], named) / 10.0))
        all_items = np.concatenate(items)
        all_scores = np.concatenate(scores)
        order = np.argsort(-all_scores, kind="stable")
        uniq, first = np.unique(all_items[order], return_index=True)
        return pl.DataFrame(
            {"item_id": uniq, "source_score": all_scores[order][first]}, schema=_EMPTY
        )
