"""Filter: at a time limit the page holds no clips (the governor's stop card replaces them)."""

from __future__ import annotations

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery, FilterResult, split_by_mask
from wellbeing.query_hydrators.governor import GOVERNOR_KEY


class GovernorStopFilter:
    """Removes every candidate when ``context["governor"]`` says ``limit_reached``.

    Cheap (one lookup, no per-row work), so it runs before scoring and nothing is ranked for
    a page that will not be shown.
    """

    name = "governor_stop"

    def enabled(self, query: FeedQuery) -> bool:
        """Only at a time limit."""
        view = query.context.get(GOVERNOR_KEY)
        return view is not None and view.decision.state == "limit_reached"

    def apply(self, query: FeedQuery, candidates: pl.DataFrame) -> FilterResult:
        """Keep all, or remove all at a limit."""
        view = query.context.get(GOVERNOR_KEY)
        stop = view is not None and view.decision.state == "limit_reached"
        return split_by_mask(candidates, np.full(candidates.height, stop, dtype=bool))
