"""A negation reaches what its clear matches share a tag with, not only what names it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl


def test_negation_covers_a_clip_that_only_shares_a_tag_with_clips_naming_it(engine: Any) -> None:
    concepts = engine.steering.concepts
    n = concepts.catalogue().n
    new_id = int(engine.state.catalogue.item_ids.max()) + 1
    author = min(engine.state.profiles.users)
    captions = [
        "a zebra crossing the savanna",
        "zebra foal at dawn",
        "two zebras drinking at the river",
        "black and white patterns up close",  # names nothing: only the tag links it
    ]
    ids = list(range(new_id, new_id + len(captions)))
    now = datetime.now(UTC).replace(tzinfo=None)
    engine.add_clips(
        pl.DataFrame(
            {
                "item_id": ids,
                "author_id": [author] * len(ids),
                "caption": captions,
                "hashtags": [["stripeswatch"]] * len(ids),
                "created_at": [now] * len(ids),
            }
        )
    )
    deadline = time.monotonic() + 120
    cat = concepts.catalogue()
    while cat.n != n + len(ids) and time.monotonic() < deadline:
        time.sleep(0.05)
        cat = concepts.catalogue()
    assert cat.n == n + len(ids)
    rows = np.asarray([engine.state.catalogue.row_of[i] for i in ids])
    base = concepts.scores("zebra", compose=False)
    neg = concepts.negated("zebra")
    assert base.lexical[rows[:3]].all() and not base.lexical[rows[3]]
    # Three of the four clips carrying the tag name the concept: the tag is in the extent,
    # so the fourth is too. The scores themselves are the concept's own.
    assert neg.extent_at(rows).all()
    assert np.array_equal(neg.z, base.z)
    assert not base.extent_at(rows).any()
    assert neg.extent is not None
    assert neg.extent[base.lexical | (base.z > concepts.settings.negation_seed_z)].all()
    # Turned off, a negation is the plain whole-phrase score.
    s = concepts.settings
    concepts.settings = s.model_copy(update={"negation_extent": False})
    try:
        assert concepts.negated("zebra") is base
    finally:
        concepts.settings = s
    # And a mood that negates it keeps the unnamed clip off the page.
    uid = min(engine.state.profiles.users)
    engine.steering.moods.create(uid, "no zebra", scope="session")
    engine.steering.moods.wait_compiled(timeout_s=60)
    sc = engine.steering.moods.active(uid)[0]
    assert sc.exclusions[0].extent_at(rows).all()
