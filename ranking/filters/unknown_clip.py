"""Filter: drops candidates the catalogue does not hold (e.g. an index ahead of the store)."""

from __future__ import annotations

import polars as pl

from ranking.pipeline import FeedQuery, FilterResult, split_by_mask


class UnknownClipFilter:
    """Removes rows whose ``row`` is -1."""

    name = "unknown_clip"

    def apply(self, query: FeedQuery, candidates: pl.DataFrame) -> FilterResult:
        """Split on catalogue membership."""
        return split_by_mask(candidates, candidates["row"] < 0)
