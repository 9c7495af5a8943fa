"""Filter: a clip showing people (cameos) reaches a viewer only when every person shown allows it.

Each person's consent names an audience (``pipelines.generation.consent``): ``everyone``,
``friends`` (mutual follows) or ``none``, the default for a person with no consent on record
(and for one who revoked it, or a teen whose consent a linked parent has not approved). A
person always sees clips of themselves. The same rule (:func:`may_see`) guards the media route.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery, FilterResult, split_by_mask
from ranking.state import FeedState

EVERYONE = "everyone"
FRIENDS = "friends"
NONE = "none"


class CameoAudiences(Protocol):
    """Whom each person lets see clips of them (``pipelines.generation.consent``)."""

    def audiences(self) -> Mapping[int, str]:
        """Effective audience per person with one wider than ``none`` (others: ``none``)."""
        ...


def may_see(
    viewer: int | None,
    people: Sequence[int],
    audiences: Mapping[int, str],
    viewer_friends: Callable[[], set[int]],
) -> bool:
    """Whether ``viewer`` (``None``: someone unknown) may see a clip showing ``people``.

    ``viewer_friends`` is called at most once, and only when a ``friends`` audience needs it.
    """
    friends: set[int] | None = None
    for person in people:
        if person == viewer:
            continue
        audience = audiences.get(person, NONE)
        if audience == EVERYONE:
            continue
        if audience == FRIENDS and viewer is not None:
            if friends is None:
                friends = viewer_friends()
            if person in friends:
                continue
        return False
    return True


class CameoConsentFilter:
    """Removes clips whose ``cameo_user_ids`` name a person whose consent does not reach the
    viewer. Cheap: a dict lookup per person shown, the viewer's friends once per page."""

    name = "cameo_consent"

    def __init__(self, state: FeedState, consents: CameoAudiences) -> None:
        self.state = state
        self.consents = consents

    def apply(self, query: FeedQuery, candidates: pl.DataFrame) -> FilterResult:
        """Split on the people shown in each clip."""
        remove = np.zeros(candidates.height, dtype=bool)
        st = self.state
        rows = st.catalogue.rows(candidates["item_id"].to_numpy())
        cameos = st.catalogue.cameos
        audiences = self.consents.audiences()
        viewer = query.user_id
        known: set[int] | None = None

        def friends() -> set[int]:
            nonlocal known
            if known is None:
                known = st.graph.friends(viewer)
            return known

        for i, r in enumerate(rows.tolist()):
            if r >= 0 and cameos[r] and not may_see(viewer, cameos[r], audiences, friends):
                remove[i] = True
        return split_by_mask(candidates, remove)
