"""POST /v1/events: an event id is unique per user, so one user's id never drops another's
event (the README's example id "e1" is everyone's first event)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ranking.state import COUNTERS
from tests.conftest import make_key


def _likes(eng: Any, item: int) -> float:
    row = int(eng.state.catalogue.rows(np.array([item]))[0])
    return float(eng.state.engagement.counts[row, COUNTERS.index("likes")])


def test_two_users_may_send_the_same_event_id(client: Any) -> None:
    eng = client.app.state.engine
    u1, u5 = sorted(eng.state.profiles.users)[:2]
    item = int(eng.state.catalogue.item_ids[3])
    before = _likes(eng, item)
    for uid in (u1, u5):
        h = make_key(client, "user", uid)
        ev = {"event_id": "e1", "user_id": uid, "event_type": "like", "item_id": item}
        r = client.post("/v1/events", json={"events": [ev]}, headers=h)
        assert r.status_code == 200 and r.json() == {"accepted": 1, "duplicates": 0}, uid
        # the same sender's retry is still a repeat
        again = client.post("/v1/events", json={"events": [ev]}, headers=h)
        assert again.json() == {"accepted": 0, "duplicates": 1}
    stored = eng.store.query("SELECT user_id FROM events WHERE event_id = 'e1' ORDER BY user_id")[
        "user_id"
    ].to_list()
    assert stored == [u1, u5]
    assert _likes(eng, item) == before + 2.0


def test_a_batch_mixing_a_repeat_and_another_users_id_keeps_the_new_one(client: Any) -> None:
    eng = client.app.state.engine
    h = make_key(client, "service")
    u1, u5 = sorted(eng.state.profiles.users)[2:4]
    item = int(eng.state.catalogue.item_ids[4])
    ev = {"event_id": "m1", "event_type": "like", "item_id": item}
    first = client.post("/v1/events", json={"events": [{**ev, "user_id": u1}]}, headers=h)
    assert first.json() == {"accepted": 1, "duplicates": 0}
    before = _likes(eng, item)
    batch = {"events": [{**ev, "user_id": u1}, {**ev, "user_id": u5}, {**ev, "user_id": u5}]}
    r = client.post("/v1/events", json=batch, headers=h)
    assert r.json() == {"accepted": 1, "duplicates": 2}
    assert _likes(eng, item) == before + 1.0  # only u5's new like counts
    n = eng.store.scalar("SELECT count(*) FROM events WHERE event_id = 'm1'")
    assert n == 2
