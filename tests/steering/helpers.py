"""Helpers shared by the steering API tests (real app, tiny world)."""

from __future__ import annotations

import time
from typing import Any

from ranking.state import COUNTERS, SAFETY_CODES


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


def statement_holds(eng: Any, uid: int, item_id: int, phrase: str) -> bool | None:
    """Whether a "why" / "held back" / reason phrase is true of the clip for this user, read
    from the serving state (``None``: a phrase this check does not know)."""
    st = eng.state
    r = st.catalogue.row_of[item_id]
    author = int(st.catalogue.author[r])
    friends = st.graph.friends(uid)
    following = st.graph.following.get(uid, set())
    parent = int(st.catalogue.remix_of[r])
    prow = st.catalogue.row_of.get(parent) if parent >= 0 else None
    remixes_friend = prow is not None and int(st.catalogue.author[prow]) in friends
    cameo = bool(friends.intersection(st.catalogue.cameos[r]))
    engaged = bool(friends.intersection(st.engagement.engagers.get(r, ())))
    counts = dict(zip(COUNTERS, st.engagement.counts[r].tolist(), strict=True))
    facts: dict[str, bool] = {
        "you follow the creator": author in following,
        "you do not follow the creator": author not in following,
        "the creator is your friend": author in friends,
        "the creator is not your friend": author not in friends,
        "friends engaged with it": engaged,
        "no friend engaged with it": not engaged,
        "a friend appears in it": cameo,
        "no friend appears in it": not cameo,
        "it remixes a friend's clip": remixes_friend,
        "remix of a friend's clip": remixes_friend,
        "it does not remix a friend's clip": not remixes_friend,
        "it is AI-generated": bool(st.catalogue.generated[r]),
        "it is not AI-generated": not bool(st.catalogue.generated[r]),
        "from a creator you follow": author in following,
        "people skip it": counts["skips"] > 0,
        "people ask to see less of it": counts["see_less"] > 0,
        "it was reported": counts["reports"] > 0,
    }
    return facts.get(phrase)


def reason_parts(reason: str) -> list[str]:
    """The phrases of a one-line reason ("Head; a and b." -> [head, a, b], lower case)."""
    text = reason.rstrip(".")
    head, _, rest = text.partition("; ")
    parts = [head] + (rest.split(" and ") if rest else [])
    return [p[0].lower() + p[1:] if p else p for p in parts]
