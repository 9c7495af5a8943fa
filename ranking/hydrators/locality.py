"""Candidate hydrator: whether a clip was made in the person's city (the location signal)."""

from __future__ import annotations

import polars as pl

from ranking.locality import ClipCities
from ranking.pipeline import FeedQuery, set_columns


class LocalityHydrator:
    """Adds ``same_city``: 1.0 when the clip was made in the request's city, else 0.0.

    The city is ``context.signals.local_city``: the client's or the profile's, and ``None``
    while the person has location off (teens by default), so every clip then reads the
    feature's neutral default, 0.
    """

    name = "locality"

    FEATURES = ("same_city",)

    def __init__(self, cities: ClipCities) -> None:
        self.cities = cities

    def hydrate(self, query: FeedQuery, candidates: pl.DataFrame) -> pl.DataFrame:
        """Return the candidates with ``same_city``."""
        city = query.context.signals.local_city
        same = self.cities.same_city(candidates["item_id"].to_numpy(), city)
        return set_columns(candidates, {"same_city": same})
