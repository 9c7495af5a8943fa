"""DELETE /v1/users/{user_id} leaves no trace of the user in any table, the index or memory."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from storage.erasure import find_mentions, is_user_column, pseudonym
from tests.conftest import make_key

# An id no clip, event position or count uses, so a hit anywhere is the user.
UID = 987_654_321
CLIP_BY_USER = 900_000_001
CLIP_WITH_CAMEO = 900_000_002


def _populate(client: Any) -> dict[str, str]:
    """Give the user every kind of data the API accepts, plus a row in a table made later."""
    eng = client.app.state.engine
    admin = make_key(client, "admin")
    service = make_key(client, "service")
    other, friend = sorted(eng.state.users)[:2]
    ok = client.post("/v1/users", json={"users": [{"user_id": UID}]}, headers=admin)
    assert ok.status_code == 201, ok.text
    me = make_key(client, "user", UID)
    clips = [
        {"item_id": CLIP_BY_USER, "author_id": UID, "caption": "my own sunset timelapse"},
        {
            "item_id": CLIP_WITH_CAMEO,
            "author_id": other,
            "caption": "beach day with friends",
            "cameo_user_ids": [UID],
        },
    ]
    assert client.post("/v1/clips", json={"clips": clips}, headers=service).status_code == 201
    for a, b in ((UID, other), (friend, UID)):
        r = client.post("/v1/follows", json={"follower_id": a, "followee_id": b}, headers=admin)
        assert r.status_code == 201, r.text
    r = client.post("/v1/blocks", json={"user_id": UID, "target_id": friend}, headers=me)
    assert r.status_code == 201, r.text
    item = int(eng.state.item_ids[0])
    now = datetime.now(UTC).isoformat()
    events = [
        {"event_id": "e-view", "user_id": UID, "event_type": "view", "item_id": item,
         "watch_frac": 0.9, "ts": now},
        {"event_id": "e-like", "user_id": UID, "event_type": "like", "item_id": item},
        {"event_id": "e-fol", "user_id": friend, "event_type": "follow", "target_user_id": UID},
        {"event_id": "e-cam", "user_id": friend, "event_type": "like", "item_id": CLIP_BY_USER},
    ]  # fmt: skip
    r = client.post("/v1/events", json={"events": events}, headers=service)
    assert r.status_code == 200, r.text
    assert client.get("/v1/feed", params={"user_id": UID}, headers=me).status_code == 200
    r = client.post(f"/v1/users/{UID}/mood", json={"text": "calm nature, no news"}, headers=me)
    assert r.status_code == 201, r.text
    r = client.patch(f"/v1/users/{UID}/governor", json={"daily_limit_min": 30}, headers=admin)
    assert r.status_code == 200, r.text  # also an admin action naming the user in the audit log
    r = client.post(
        "/v1/parental/links", json={"parent_id": UID, "child_id": friend}, headers=admin
    )
    assert r.status_code == 201, r.text
    with eng.store.write() as cur:  # a table another package might add later
        cur.execute("CREATE TABLE later_feature (teen_id BIGINT, note VARCHAR)")
        cur.execute("INSERT INTO later_feature VALUES (?, 'x'), (1, 'kept')", [UID])
    return me


def test_erasure_leaves_no_trace_in_tables_index_or_memory(client: Any) -> None:
    eng = client.app.state.engine
    me = _populate(client)
    before = find_mentions(eng.store, UID)
    for where in ("users.user_id", "events.user_id", "follows.follower_id", "clips.author_id",
                  "clips.cameo_user_ids", "moods.user_id", "api_keys.user_id",
                  "later_feature.teen_id", "audit_log.target"):  # fmt: skip
        assert where in before, f"set-up did not reach {where}: {before}"
    assert eng.index is not None
    assert len(eng.index.get_vectors("caption", np.array([CLIP_BY_USER, CLIP_WITH_CAMEO]))) == 2

    r = client.delete(f"/v1/users/{UID}", headers=me)
    assert r.status_code == 200, r.text
    assert r.json()["erased"] == pseudonym(UID)
    assert r.json()["deleted_clips"] == 2

    assert find_mentions(eng.store, UID) == {}
    assert eng.store.scalar("SELECT count(*) FROM later_feature") == 1
    assert eng.index.get_vectors("caption", np.array([CLIP_BY_USER, CLIP_WITH_CAMEO])) == {}
    st = eng.state
    assert UID not in st.users
    assert UID not in st.following and UID not in st.followers and UID not in st.history
    assert all(UID not in s for s in st.following.values())
    assert all(UID not in s for s in st.engagers.values())
    assert CLIP_BY_USER not in st.row_of and CLIP_WITH_CAMEO not in st.row_of
    assert all(UID not in c for c in st.cameos)
    # the user's key died with the user; an admin sees the erasure under a pseudonym
    assert client.get("/v1/feed", params={"user_id": UID}, headers=me).status_code == 401
    log = client.get("/v1/admin/audit-log", headers=make_key(client, "admin")).json()["entries"]
    assert any(e["action"] == "user.erase" and e["target"] == pseudonym(UID) for e in log)


def test_erased_clips_never_reach_a_page(client: Any) -> None:
    eng = client.app.state.engine
    _populate(client)
    client.delete(f"/v1/users/{UID}", headers=make_key(client, "admin"))
    for uid in sorted(eng.state.users)[:5]:
        page = eng.feed(uid, limit=50)
        assert not {CLIP_BY_USER, CLIP_WITH_CAMEO} & {i.item_id for i in page.items}


def test_only_the_user_or_an_admin_may_erase(client: Any) -> None:
    a, b = sorted(client.app.state.engine.state.users)[:2]
    for headers in (make_key(client, "user", a), make_key(client, "service"),
                    make_key(client, "analyst")):  # fmt: skip
        assert client.delete(f"/v1/users/{b}", headers=headers).status_code == 403
    r = client.delete("/v1/users/123456789012", headers=make_key(client, "admin"))
    assert r.status_code == 404


def test_user_columns_are_recognised_by_name() -> None:
    for name in ("user_id", "follower_id", "target_user_id", "cameo_user_ids", "teen_id",
                 "parent_id", "author_id", "actor_user_id"):  # fmt: skip
        assert is_user_column(name), name
    for name in ("item_id", "position", "remix_of", "users_count", "event_id"):
        assert not is_user_column(name), name
