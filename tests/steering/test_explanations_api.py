"""Explanations are true: every statement is checked against the serving state; friends'
creations say the connection; rules and moods say when they acted; a clip the user asked
the generator for opens their next page."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery
from steering.filters.mood_exclusions import RULE_ACTS_Z
from storage.store import utcnow
from tests.conftest import make_key
from tests.steering.helpers import busiest_user, page, reason_parts, statement_holds


def _check_page(eng: Any, uid: int, items: list[dict[str, Any]]) -> int:
    """Assert every known statement of every item holds; return how many were checked."""
    checked = 0
    for it in items:
        ex = it["explanation"]
        for phrase in [*reason_parts(it["reason"]), *ex["why"], *ex["held_back"]]:
            holds = statement_holds(eng, uid, it["item_id"], phrase)
            if holds is not None:
                assert holds, (uid, it["item_id"], phrase, it["reason"])
                checked += 1
    return checked


def test_every_statement_about_an_item_is_true_of_it(client: Any) -> None:
    eng = client.app.state.engine
    users = sorted(
        eng.state.activity.history, key=lambda u: -len(eng.state.activity.history[u].rows)
    )[:6]
    checked = 0
    for uid in users:
        h = make_key(client, "user", uid)
        checked += _check_page(eng, uid, page(client, uid, h, 30))
    assert checked > 0


def test_friends_creations_are_served_with_the_connection_as_the_reason(client: Any) -> None:
    eng = client.app.state.engine
    st = eng.state
    found = 0
    for uid in sorted(st.profiles.users):
        if not st.graph.friends(uid):
            continue
        h = make_key(client, "user", uid)
        for it in page(client, uid, h, 30):
            if it["source"] != "friends_creations":
                continue
            head = reason_parts(it["reason"])[0]
            assert head in {"a friend appears in it", "remix of a friend's clip"}, it["reason"]
            assert statement_holds(eng, uid, it["item_id"], head)
            found += 1
        if found >= 3:
            break
    assert found >= 1


def test_rules_applied_and_mood_match_whenever_a_rule_or_a_mood_acts(client: Any) -> None:
    uid = busiest_user(client)
    h = make_key(client, "user", uid)
    eng = client.app.state.engine
    top = eng.state.catalogue.primary_topic[eng.state.activity.history[uid].rows[-1]]
    r = client.put(
        f"/v1/users/{uid}/controls",
        json={"less_of": [str(top)], "more_of": ["cooking"]},
        headers=h,
    )
    assert r.status_code == 200, r.text
    # A mood of one negation: no facet to match, but it acts on every clip it keeps.
    assert (
        client.post(f"/v1/users/{uid}/mood", json={"text": "no news"}, headers=h).status_code == 201
    )
    q = FeedQuery(user_id=uid, limit=30, now=datetime.now(UTC).replace(tzinfo=None), session_id="t")
    res = eng.products["home"].run(q, dry_run=True)
    frame = res.page
    explain = frame["_explain"].to_list()
    more = frame["steer_more"].to_numpy()
    less = frame["steer_less"].to_numpy()
    for k, ex in enumerate(explain):
        assert ex["mood"] == "no news"
        assert ex["mood_match"] is not None and 0.0 <= ex["mood_match"] <= 1.0
        rules = ex["rules_applied"]
        assert ("more_of:cooking" in rules) == bool(more[k] > RULE_ACTS_Z)
        assert (f"less_of:{top}" in rules) == bool(less[k] > RULE_ACTS_Z)
    assert np.any(more > RULE_ACTS_Z)
    # Through the API the same fields reach every item.
    for it in page(client, uid, h, 20):
        assert it["explanation"]["mood_match"] is not None
        assert "mood:no news" in it["explanation"]["rules_applied"]


def test_a_clip_the_user_asked_for_opens_their_next_page_once_ready(client: Any) -> None:
    uid = busiest_user(client)
    h = make_key(client, "user", uid)
    eng = client.app.state.engine
    page(client, uid, h)
    clip_id = 20_000_000 + int(uuid.uuid4().int % 1_000_000)
    clip = pl.DataFrame(
        {
            "item_id": [clip_id],
            "author_id": [uid],
            "caption": ["a lighthouse at dusk, slow waves, made for me"],
            "topics": [["nature"]],
            "hashtags": [["generated"]],
            "duration_s": [8.0],
            "created_at": [utcnow()],
            "is_generated": [True],
        }
    )
    eng.add_clips(clip)
    items = page(client, uid, h)
    assert items[0]["item_id"] == clip_id, [i["item_id"] for i in items[:5]]
    assert items[0]["is_generated"]
