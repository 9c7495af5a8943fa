"""Filter: clips held for review or taken down never appear, in any product."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery, FilterResult, split_by_mask


class HiddenClips(Protocol):
    """The review queue (``pipelines.generation.review.ClipReviews``)."""

    def hidden(self) -> dict[int, str]:
        """Hidden clip ids and why."""
        ...


class ClipReviewFilter:
    """Removes clips that frame review holds, that enough users reported, or that a rights
    holder or an admin took down (one set lookup per candidate)."""

    name = "clip_review"

    def __init__(self, reviews: HiddenClips) -> None:
        self.reviews = reviews

    def apply(self, query: FeedQuery, candidates: pl.DataFrame) -> FilterResult:
        """Split on the hidden set."""
        hidden = self.reviews.hidden()
        if not hidden:
            return split_by_mask(candidates, np.zeros(candidates.height, dtype=bool))
        ids = candidates["item_id"].to_numpy()
        remove = np.fromiter((int(i) in hidden for i in ids), dtype=bool, count=len(ids))
        return split_by_mask(candidates, remove)
