"""The concept catalogue is built once; a stale one keeps serving pages while it is rebuilt."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import polars as pl


def test_added_clips_do_not_make_a_page_wait_for_the_rebuild(engine: Any) -> None:
    concepts = engine.steering.concepts
    assert engine.health()["steering"] == {"concept_catalogue": "building"}
    first = concepts.catalogue()
    n = first.n
    assert concepts.status() == "ready"
    assert concepts.catalogue() is first  # cached while nothing changes
    new_id = int(engine.state.catalogue.item_ids.max()) + 1
    author = min(engine.state.profiles.users)
    engine.add_clips(
        pl.DataFrame(
            {
                "item_id": [new_id],
                "author_id": [author],
                "caption": ["a calm walk by the lake at dawn #nature"],
                "created_at": [datetime.now(UTC).replace(tzinfo=None)],
            }
        ),
        embed=False,
    )
    assert concepts.status() == "stale"
    stale = concepts.catalogue()
    assert stale is first and stale.n == n  # served at once: no page waits for a rebuild
    assert concepts.word_mask("calm walk").shape == (n,)  # rules still answer
    # The rebuild happens in the background and then replaces the stale catalogue.
    deadline = time.monotonic() + 120
    cat = stale
    while cat.n != n + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
        cat = concepts.catalogue()
    assert cat.n == n + 1
    assert concepts.status() == "ready"
    assert concepts.word_mask("calm walk")[cat.n - 1]
    # The rebuild kept the old clips' graph rows and searched only the new clip's neighbours.
    assert cat.neighbours is not None and first.neighbours is not None
    assert (cat.neighbours[:n] == first.neighbours).all()
    assert cat.neighbours.shape == (n + 1, first.neighbours.shape[1])
    assert n not in cat.neighbours[n]


def test_warm_async_builds_before_the_first_mood(engine: Any) -> None:
    concepts = engine.steering.concepts
    t = concepts.warm_async()
    assert t is not None
    t.join(timeout=120)
    assert concepts._catalogue is not None
    assert concepts.warm_async() is None  # already built
