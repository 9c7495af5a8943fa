"""Opaque, signed pagination cursors carrying the session and the clips already served."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import zlib
from dataclasses import dataclass

from ranking.errors import BadCursorError

MAX_SERVED_IN_CURSOR = 2000


@dataclass(frozen=True)
class Cursor:
    """Decoded cursor: whose session it is, which page comes next, what was served."""

    user_id: int
    session_id: str
    page: int
    served: frozenset[int]


class CursorCodec:
    """Encodes cursors as URL-safe base64 of zlib JSON plus an HMAC-SHA256 tag.

    The server stays stateless: everything needed for the next page travels in the cursor,
    and the tag stops clients from forging or editing it.
    """

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def encode(self, cursor: Cursor) -> str:
        """Return the opaque token."""
        served = sorted(cursor.served)[-MAX_SERVED_IN_CURSOR:]
        body = json.dumps(
            {"u": cursor.user_id, "s": cursor.session_id, "p": cursor.page, "i": served},
            separators=(",", ":"),
        ).encode()
        packed = zlib.compress(body, 6)
        tag = hmac.new(self.secret, packed, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(tag + packed).decode().rstrip("=")

    def decode(self, token: str, *, user_id: int) -> Cursor:
        """Verify and decode a token for ``user_id``; raise :class:`BadCursorError` otherwise."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError) as exc:
            msg = "cursor is not valid base64; pass the next_cursor value from the previous page"
            raise BadCursorError(msg) from exc
        tag, packed = raw[:16], raw[16:]
        good = hmac.new(self.secret, packed, hashlib.sha256).digest()[:16]
        if len(tag) != 16 or not hmac.compare_digest(tag, good):
            msg = "cursor signature does not match; pass the next_cursor value unchanged"
            raise BadCursorError(msg)
        try:
            data = json.loads(zlib.decompress(packed))
            cur = Cursor(
                int(data["u"]), str(data["s"]), int(data["p"]), frozenset(int(i) for i in data["i"])
            )
        except (ValueError, KeyError, TypeError, zlib.error) as exc:
            msg = "cursor content is malformed"
            raise BadCursorError(msg) from exc
        if cur.user_id != user_id:
            msg = f"cursor belongs to another user, not user {user_id}"
            raise BadCursorError(msg)
        return cur
