"""Negative feedback through the real API moves the next page (see less on a topic)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from tests.conftest import make_key
from tests.steering.helpers import busiest_user, page, wait_until_seen


def test_see_less_on_every_clip_of_a_topic_drops_its_share_by_sixty_percent(client: Any) -> None:
    uid = busiest_user(client)
    h = make_key(client, "user", uid)
    eng = client.app.state.engine
    first = page(client, uid, h)
    wait_until_seen(eng, uid, int(first[-1]["item_id"]))
    topic, before = Counter(i["topics"][0] for i in first if i["topics"]).most_common(1)[0]
    assert before >= 2, first
    events = [
        {
            "event_id": f"less-{i['item_id']}",
            "user_id": uid,
            "item_id": i["item_id"],
            "event_type": "see_less",
        }
        for i in first
        if i["topics"] and i["topics"][0] == topic
    ]
    mix_before = eng.state.activity.topic_mix(uid, time.time())
    r = client.post("/v1/events", json={"events": events}, headers=h)
    assert r.status_code in (200, 201), r.text
    after = page(client, uid, h)
    n_after = sum(1 for i in after if i["topics"] and i["topics"][0] == topic)
    assert n_after <= 0.4 * before, (topic, before, n_after)
    # The taste moved, not only the clip's counters: the topic's weight in the mix fell.
    now = time.time()
    assert eng.state.activity.topic_feedback(uid, now)[topic] >= 0.9 * len(events)
    assert eng.state.activity.topic_mix(uid, now).get(topic, 0.0) < 0.5 * mix_before[topic]
