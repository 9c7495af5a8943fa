"""Post-selection filter: today's AI-generated clip allowance, and the page counted at once."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery, FilterResult, split_by_mask
from wellbeing.query_hydrators.governor import GOVERNOR_KEY

if TYPE_CHECKING:
    from wellbeing.service import GovernorService


class GovernorPageFilter:
    """Removes AI-generated clips beyond what ``max_generated_per_day`` still allows (the
    best-placed ones stay), then counts the page and its generated clips in the usage tracker
    before the response leaves, so a client paging fast cannot outrun the page or clip caps
    while impressions are still being written.
    """

    name = "governor_page"

    def __init__(self, governor: GovernorService) -> None:
        self.governor = governor

    def apply(self, query: FeedQuery, candidates: pl.DataFrame) -> FilterResult:
        """Cap generated clips and record the page."""
        view = query.context.get(GOVERNOR_KEY)
        n = candidates.height
        remove = np.zeros(n, dtype=bool)
        if view is not None and "item_id" in candidates.columns:
            st = self.governor.state
            rows = st.rows(candidates["item_id"].to_numpy())
            generated = np.where(rows >= 0, st.generated[np.maximum(rows, 0)], False)
            left = view.generated_left
            if left is not None:
                rank = np.cumsum(generated)  # page order: the first ``left`` ones stay
                remove = generated & (rank > left)
            kept_generated = int((generated & ~remove).sum())
            if n - int(remove.sum()) > 0:
                self.governor.record_page(
                    query.user_id, query.request_id, query.now, kept_generated
                )
        return split_by_mask(candidates, remove)
