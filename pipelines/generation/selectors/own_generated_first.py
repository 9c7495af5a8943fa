"""Selector: a clip the user asked the generator for opens their next page once it is ready."""

from __future__ import annotations

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery, Selector
from ranking.state import FeedState


class OwnGeneratedFirstSelector:
    """Wraps a selector: the user's own generated clips among the candidates (not yet seen:
    the already-seen filter ran), newest first, open the page, and the wrapped selector's page
    follows (truncated to the limit). A clip the user asked for arrived at positions 65 and 84
    of 100 when the value model ranked it like any other clip. At most ``max_first`` are lifted.
    """

    name = "own_generated_first"

    def __init__(self, inner: Selector, state: FeedState, *, max_first: int = 2) -> None:
        self.inner = inner
        self.state = state
        self.max_first = max_first

    def select(self, query: FeedQuery, candidates: pl.DataFrame) -> pl.DataFrame:
        """Return at most ``query.limit`` rows: the user's new clips, then the inner page."""
        page = self.inner.select(query, candidates)
        if candidates.height == 0 or "row" not in candidates.columns:
            return page
        st = self.state
        rows = candidates["row"].to_numpy().astype(np.int64)
        ok = rows >= 0
        own = np.zeros(candidates.height, dtype=bool)
        own[ok] = st.catalogue.generated[rows[ok]] & (
            st.catalogue.author[rows[ok]] == query.user_id
        )
        if not own.any():
            return page
        idx = np.flatnonzero(own)
        idx = idx[np.argsort(-st.catalogue.created[rows[idx]], kind="stable")][: self.max_first]
        first = candidates[idx]
        lifted = set(first["item_id"].to_list())
        rest = page.filter(~pl.col("item_id").is_in(list(lifted)))
        out = pl.concat([first.select(rest.columns), rest], how="vertical_relaxed")
        return out.head(query.limit)
