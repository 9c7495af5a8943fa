"""Post-selection filter: today's AI-generated clip allowance."""

from __future__ import annotations

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery, FilterResult, split_by_mask
from wellbeing.service import GovernorService, GovernorView


class GovernorPageFilter:
    """Removes AI-generated clips beyond what ``max_generated_per_day`` still allows (the
    best-placed ones stay). Counting the page is a side effect
    (:class:`~wellbeing.side_effects.governor_page_count.GovernorPageCountSideEffect`), so a
    dry run (a "why not" lookup) does not count toward the caps.
    """

    name = "governor_page"

    def __init__(self, governor: GovernorService) -> None:
        self.governor = governor

    def enabled(self, query: FeedQuery) -> bool:
        """Only when the governor hydrator ran for this request."""
        return query.context.get(GovernorView) is not None

    def apply(self, query: FeedQuery, candidates: pl.DataFrame) -> FilterResult:
        """Cap generated clips in page order."""
        view = query.context.get(GovernorView)
        remove = np.zeros(candidates.height, dtype=bool)
        if view is not None and view.generated_left is not None:
            generated = generated_mask(self.governor, candidates)
            rank = np.cumsum(generated)  # page order: the first ``left`` ones stay
            remove = generated & (rank > view.generated_left)
        return split_by_mask(candidates, remove)


def generated_mask(governor: GovernorService, page: pl.DataFrame) -> np.ndarray:
    """Which rows of a page are AI-generated clips."""
    st = governor.state
    rows = st.catalogue.rows(page["item_id"].to_numpy())
    return np.where(rows >= 0, st.catalogue.generated[np.maximum(rows, 0)], False)
