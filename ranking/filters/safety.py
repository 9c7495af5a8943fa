"""Filter: violative clips never appear; clips above the user's maturity setting are removed."""

from __future__ import annotations

import polars as pl

from ranking.pipeline import FeedQuery, FilterResult, split_by_mask
from ranking.state import SAFETY_CODES


class SafetyFilter:
    """Removes violative clips and clips whose maturity exceeds ``query.context.maturity_max``."""

    name = "safety"

    def apply(self, query: FeedQuery, candidates: pl.DataFrame) -> FilterResult:
        """Split on safety label and maturity."""
        max_m = query.context.maturity_max
        # numpy on the two columns, not a polars ``select``: that plans a lazy query per page.
        safety = candidates["safety"].to_numpy()
        maturity = candidates["maturity"].to_numpy()
        return split_by_mask(candidates, (safety >= SAFETY_CODES["violative"]) | (maturity > max_m))
