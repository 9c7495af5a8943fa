"""Filter: at a time limit the page holds no clips (the governor's stop card replaces them)."""

from __future__ import annotations

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery, FilterResult, split_by_mask
from wellbeing.service import GovernorView


class GovernorStopFilter:
    """Removes every candidate when the request's governor view says ``limit_reached``.

    Cheap (one lookup, no per-row work), so it runs before scoring and nothing is ranked for
    a page that will not be shown.
    """

    name = "governor_stop"

    def enabled(self, query: FeedQuery) -> bool:
        """Only at a time limit."""
        view = query.context.get(GovernorView)
        return view is not None and view.decision.state == "limit_reached"

    def apply(self, query: FeedQuery, candidates: pl.DataFrame) -> FilterResult:
        """Keep all, or remove all at a limit."""
        view = query.context.get(GovernorView)
        stop = view is not None and view.decision.state == "limit_reached"
        return split_by_mask(candidates, np.full(candidates.height, stop, dtype=bool))
