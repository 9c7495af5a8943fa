"""Clips' cities in memory: normalised, bounded to city names, replaced and forgotten."""

from __future__ import annotations

import numpy as np
import polars as pl

from ranking.locality import ClipCities


def test_cities_are_normalised_and_values_finer_than_a_city_are_never_held() -> None:
    c = ClipCities()
    c.replace(
        pl.DataFrame(
            {
                "item_id": [1, 2, 3, 4, 5],
                "city": ["Lisbon", " lisbon ", "38.72,-9.13", None, "Rua Augusta 12"],
            }
        )
    )
    assert c.known() == frozenset({"lisbon"})
    assert [c.city_of(i) for i in (1, 2, 3, 4, 5, 99)] == [
        "lisbon",
        "lisbon",
        None,
        None,
        None,
        None,
    ]
    same = c.same_city(np.asarray([1, 2, 3, 99]), "lisbon")
    assert same.tolist() == [1.0, 1.0, 0.0, 0.0]
    assert c.same_city(np.asarray([1, 2]), None).tolist() == [0.0, 0.0]
    assert c.same_city(np.asarray([1, 2]), "porto").tolist() == [0.0, 0.0]


def test_added_clips_update_the_known_set_and_replace_earlier_cities() -> None:
    c = ClipCities()
    c.replace(pl.DataFrame({"item_id": [1, 2], "city": ["porto", "lisbon"]}))
    assert c.known() == frozenset({"porto", "lisbon"})  # cached from here
    c.add(pl.DataFrame({"item_id": [3, 1], "city": ["Braga", None]}))
    assert c.known() == frozenset({"lisbon", "braga"})  # porto's only clip lost its city
    assert c.city_of(1) is None and c.city_of(3) == "braga"
    c.add(pl.DataFrame({"item_id": [4]}))  # a frame without cities adds nothing
    assert c.city_of(4) is None
    c.replace(pl.DataFrame({"item_id": [3], "city": ["braga"]}))  # after an erasure: reload
    assert c.known() == frozenset({"braga"}) and c.city_of(2) is None
