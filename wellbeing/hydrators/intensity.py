"""Candidate hydrator: how intense each clip reads (lexicon score in ``[0, 1]``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from ranking.pipeline import FeedQuery, set_columns

if TYPE_CHECKING:
    from wellbeing.intensity import ClipIntensity


class IntensityHydrator:
    """Adds ``intensity`` (0 calm .. 1 intense; see :mod:`wellbeing.intensity`)."""

    name = "intensity"

    def __init__(self, intensity: ClipIntensity) -> None:
        self.intensity = intensity

    def hydrate(self, query: FeedQuery, candidates: pl.DataFrame) -> pl.DataFrame:
        """Return the candidates with an ``intensity`` column."""
        state = self.intensity.state
        rows = (
            candidates["row"].to_numpy()
            if "row" in candidates.columns
            else state.catalogue.rows(candidates["item_id"].to_numpy())
        )
        return set_columns(candidates, {"intensity": self.intensity.for_rows(rows)})
