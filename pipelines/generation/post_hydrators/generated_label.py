"""Post-selection hydrator (keeps every row): labels AI-generated clips in the explanation.

Adds to each item's ``explanation``: ``generated`` (AI-generated), ``made_for_your_mood``
(brought by the "made for your mood" source) and ``media_url`` (the mp4 served under
``/media``, when the generator made it; the callable gets the viewer too, so that a clip
showing people who limit their audience gets a link signed for this page).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from pipelines.generation.sources.generated import GENERATED_SOURCE
from ranking.pipeline import FeedQuery, set_columns
from ranking.state import FeedState


class GeneratedLabelPostHydrator:
    """Adds the generated labels to ``_explain`` (merged with what is already there)."""

    name = "generated_label"

    def __init__(self, state: FeedState, media_url: Callable[[int, int], str | None]) -> None:
        self.state = state
        self.media_url = media_url

    def hydrate(self, query: FeedQuery, candidates: pl.DataFrame) -> pl.DataFrame:
        """Return every row with the labels."""
        if candidates.height == 0:
            return candidates
        st = self.state
        ids = candidates["item_id"].to_numpy()
        rows = st.catalogue.rows(ids)
        generated = np.where(rows >= 0, st.catalogue.generated[np.maximum(rows, 0)], False)
        sources = (
            candidates["source"].to_list()
            if "source" in candidates.columns
            else [""] * candidates.height
        )
        urls = [
            self.media_url(int(i), query.user_id) if g else None
            for i, g in zip(ids.tolist(), generated.tolist(), strict=True)
        ]
        new = pl.DataFrame(
            {
                "generated": generated.astype(bool),
                "made_for_your_mood": [s == GENERATED_SOURCE for s in sources],
                "media_url": urls,
            },
            schema={
                "generated": pl.Boolean,
                "made_for_your_mood": pl.Boolean,
                "media_url": pl.String,
            },
        )
        if "_explain" in candidates.columns and isinstance(
            candidates.schema["_explain"], pl.Struct
        ):
            prev = candidates["_explain"].struct.unnest()
            clash = [c for c in new.columns if c in prev.columns]
            if clash:  # ``drop`` plans a lazy query: only when there is something to drop
                prev = prev.drop(clash)
            new = pl.concat([prev, new], how="horizontal")
        return set_columns(candidates, {"_explain": new.to_struct("_explain")})
