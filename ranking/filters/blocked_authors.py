"""Filter: clips by authors the user blocked or muted, or who blocked the user."""

from __future__ import annotations

import polars as pl

from ranking.pipeline import FeedQuery, FilterResult, split_by_mask


class BlockedAuthorsFilter:
    """Removes clips whose author is in the user's blocked/muted set."""

    name = "blocked_author"

    def apply(self, query: FeedQuery, candidates: pl.DataFrame) -> FilterResult:
        """Split on author membership."""
        blocked = query.context.blocked
        if not blocked:
            return FilterResult(candidates, candidates.clear())
        return split_by_mask(candidates, candidates["author_id"].is_in(list(blocked)))
