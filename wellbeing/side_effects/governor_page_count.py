"""Side effect: the served page (and its AI-generated clips) counted in the usage tracker."""

from __future__ import annotations

import polars as pl

from ranking.pipeline import FeedQuery
from wellbeing.filters.governor_page import generated_mask
from wellbeing.service import GovernorService, GovernorView


class GovernorPageCountSideEffect:
    """Counts a non-empty page at once, before its impressions are committed, so a client
    paging fast cannot outrun the page or generated-clip caps while impressions are still
    being written. Inline (a dictionary update, done before the response leaves); skipped by a
    dry run, so a "why not" lookup does not count as a page.
    """

    name = "governor_page_count"
    runs_inline = True

    def __init__(self, governor: GovernorService) -> None:
        self.governor = governor

    def enabled(self, query: FeedQuery) -> bool:
        """Only when the governor hydrator ran for this request."""
        return query.context.get(GovernorView) is not None

    def run(self, query: FeedQuery, page: pl.DataFrame) -> None:
        """Record the page."""
        if page.height == 0:
            return
        n_generated = int(generated_mask(self.governor, page).sum())
        self.governor.record_page(query.user_id, query.request_id, query.now, n_generated)
