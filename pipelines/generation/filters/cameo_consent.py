"""Filter: clips showing a person who revoked their cameo consent never appear."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery, FilterResult, split_by_mask
from ranking.state import FeedState


class RevokedCameos(Protocol):
    """Who revoked their cameo consent (``pipelines.generation.rules.CameoConsentRegistry``)."""

    def revoked_users(self) -> frozenset[int]:
        """User ids."""
        ...


class CameoConsentFilter:
    """Removes clips whose ``cameo_user_ids`` name a user who revoked their consent."""

    name = "cameo_consent"

    def __init__(self, state: FeedState, consents: RevokedCameos) -> None:
        self.state = state
        self.consents = consents

    def apply(self, query: FeedQuery, candidates: pl.DataFrame) -> FilterResult:
        """Split on revoked cameos (a set lookup per clip with cameos)."""
        revoked = self.consents.revoked_users()
        remove = np.zeros(candidates.height, dtype=bool)
        if revoked:
            st = self.state
            rows = st.rows(candidates["item_id"].to_numpy())
            cameos = st.cameos
            for i, r in enumerate(rows.tolist()):
                if r >= 0 and cameos[r] and not revoked.isdisjoint(cameos[r]):
                    remove[i] = True
        return split_by_mask(candidates, remove)
