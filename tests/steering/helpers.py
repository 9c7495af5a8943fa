"""Helpers shared by the steering API tests (real app, tiny world)."""

from __future__ import annotations

import time
from typing import Any

from ranking.state import SAFETY_CODES


def busiest_user(client: Any) -> int:
    """The user with the longest history in the tiny world."""
    eng = client.app.state.engine
    return int(
        max(eng.state.activity.history, key=lambda u: len(eng.state.activity.history[u].rows))
    )


def page(client: Any, uid: int, h: dict[str, str], limit: int = 20) -> list[dict[str, Any]]:
    """One fresh page (no cursor) through ``GET /v1/feed``."""
    r = client.get("/v1/feed", params={"user_id": uid, "limit": limit}, headers=h)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def wait_until_seen(eng: Any, uid: int, item_id: int, timeout_s: float = 15.0) -> None:
    """Wait for the impression side effect (run in the background after the response) to be
    committed, so "already seen" is a fact before it is asked about."""
    deadline = time.monotonic() + timeout_s
    while item_id not in eng.state.activity.seen.get(uid, set()):
        assert time.monotonic() < deadline, f"impression of {item_id} never committed"
        eng.writer.flush(timeout=0.5)
        time.sleep(0.02)


def servable_unseen(eng: Any, uid: int, *, topic: str | None = None) -> int:
    """A clip the user has not seen that safety lets through (lowest maturity), optionally one
    carrying ``topic``: only a steering rule can keep it off the page."""
    st = eng.state
    seen = st.activity.seen.get(uid, set())
    for i in st.catalogue.item_ids:
        r = st.catalogue.row_of[int(i)]
        if (
            int(i) not in seen
            and int(st.catalogue.safety[r]) < SAFETY_CODES["violative"]
            and int(st.catalogue.maturity[r]) == 0
            and (topic is None or topic in st.catalogue.topics[r])
        ):
            return int(i)
    msg = f"no servable unseen clip with topic {topic!r}"
    raise AssertionError(msg)
