"""Cursors are opaque, signed and bound to a user."""

from __future__ import annotations

import pytest

from ranking.cursor import Cursor, CursorCodec
from ranking.errors import BadCursorError


def test_round_trip_keeps_served_ids() -> None:
    codec = CursorCodec(b"k" * 32)
    c = Cursor(7, "sess", 2, frozenset({1, 5, 9}))
    assert codec.decode(codec.encode(c), user_id=7) == c


@pytest.mark.parametrize("token", ["", "!!!", "abc", "x" * 100])
def test_garbage_is_rejected(token: str) -> None:
    with pytest.raises(BadCursorError):
        CursorCodec(b"k" * 32).decode(token, user_id=7)


def test_tampered_or_foreign_cursor_is_rejected() -> None:
    codec = CursorCodec(b"k" * 32)
    tok = codec.encode(Cursor(7, "sess", 1, frozenset({1})))
    with pytest.raises(BadCursorError, match="another user"):
        codec.decode(tok, user_id=8)
    with pytest.raises(BadCursorError, match="signature"):
        CursorCodec(b"z" * 32).decode(tok, user_id=7)
