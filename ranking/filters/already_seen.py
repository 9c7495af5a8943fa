"""Filter: clips the user has seen or that earlier pages of this session served."""

from __future__ import annotations

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery, FilterResult, split_by_mask


class AlreadySeenFilter:
    """Removes clips in the user's seen set or in the cursor's served set."""

    name = "already_seen"

    def apply(self, query: FeedQuery, candidates: pl.DataFrame) -> FilterResult:
        """Split on set membership."""
        seen = query.context.seen
        gone = seen | query.exclude_ids if query.exclude_ids else seen
        if not gone:
            return FilterResult(candidates, candidates.clear())
        # numpy membership: building a polars list of the (often hundreds of) seen ids costs
        # more than the test itself.
        gone_ids = np.fromiter(gone, dtype=np.int64, count=len(gone))
        return split_by_mask(candidates, np.isin(candidates["item_id"].to_numpy(), gone_ids))
