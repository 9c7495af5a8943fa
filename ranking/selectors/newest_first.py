"""Selector: the newest clips first, no reordering by score or topic."""

from __future__ import annotations

import polars as pl

from ranking.pipeline import FeedQuery


class NewestFirstSelector:
    """Orders by ``age_hours`` ascending (ties by ``item_id``) and keeps ``query.limit``."""

    name = "newest_first"

    def select(self, query: FeedQuery, candidates: pl.DataFrame) -> pl.DataFrame:
        """Return the newest ``query.limit`` candidates."""
        if candidates.height == 0:
            return candidates
        return candidates.sort(["age_hours", "item_id"], descending=[False, True]).head(query.limit)
