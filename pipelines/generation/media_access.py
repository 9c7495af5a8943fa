"""Who may fetch a generated clip's files from the public media route.

``/media`` takes no API key (a ``<video>`` tag sends none). A clip showing nobody, or only
people whose consent says ``everyone``, is public. A clip showing someone with a narrower
audience is served only with a signed link from a page that was allowed to show it: the feed
adds ``?t=<expiry>.<signature>`` to its ``media_url``. The signature covers the clip, the expiry
and the audiences of the people shown, so a link stops working when one of them narrows or
revokes their consent (and when it expires). The link names no user.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pipelines.generation.filters.cameo_consent import EVERYONE, NONE

if TYPE_CHECKING:
    from pipelines.generation.consent import CameoConsentRegistry
    from ranking.state import FeedState

LINK_TTL_S = 3600


class MediaAccess:
    """Signs and checks media links for clips whose people limit who may see them.

    Parameters
    ----------
    key
        Signing key (kept outside the store).
    state
        Serving state: the people shown in each clip.
    consents
        The consent registry.
    media_url
        The clip's plain media URL, or None when the generator did not write it.
    ttl_s
        How long a link works.
    """

    def __init__(
        self,
        key: bytes,
        state: FeedState,
        consents: CameoConsentRegistry,
        media_url: Callable[[int], str | None],
        *,
        ttl_s: int = LINK_TTL_S,
    ) -> None:
        self._key = key
        self.state = state
        self.consents = consents
        self._media_url = media_url
        self.ttl_s = ttl_s

    def people(self, item_id: int) -> list[int]:
        """Users shown in the clip (empty for an unknown clip)."""
        st = self.state
        row = int(st.catalogue.rows([item_id])[0])
        return list(st.catalogue.cameos[row]) if row >= 0 else []

    def _audiences(self, people: list[int]) -> list[tuple[int, str]]:
        aud = self.consents.audiences()
        return sorted((p, aud.get(p, NONE)) for p in set(people))

    def is_public(self, item_id: int) -> bool:
        """Whether anyone may fetch the clip's files without a link."""
        return all(a == EVERYONE for _, a in self._audiences(self.people(item_id)))

    def _sign(self, item_id: int, expires: int, people: list[int]) -> str:
        tag = ";".join(f"{p}:{a}" for p, a in self._audiences(people))
        msg = f"{item_id}|{expires}|{tag}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:32]

    def url(self, item_id: int, viewer: int) -> str | None:
        """The media URL to give ``viewer`` on a page: plain when public, signed when the
        people shown allow the viewer, None otherwise (or when there is no media)."""
        base = self._media_url(item_id)
        if base is None:
            return None
        people = self.people(item_id)
        if all(a == EVERYONE for _, a in self._audiences(people)):
            return base
        if not self.consents.visible_to(viewer, people):
            return None
        expires = int(time.time()) + self.ttl_s
        return f"{base}?t={expires}.{self._sign(item_id, expires, people)}"

    def allows(self, item_id: int, token: str | None) -> bool:
        """Whether a request with ``token`` (the ``t`` parameter, if any) may fetch the files."""
        people = self.people(item_id)
        if all(a == EVERYONE for _, a in self._audiences(people)):
            return True
        if not token:
            return False
        expires_s, _, sig = token.partition(".")
        if not expires_s.isdigit() or int(expires_s) < time.time():
            return False
        return hmac.compare_digest(sig, self._sign(item_id, int(expires_s), people))
