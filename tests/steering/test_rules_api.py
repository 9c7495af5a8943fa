"""Standing rules in plain words, through the real app on the tiny world: saved, shown back,
changed, applied on every page (per creator and time of day) and removed."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from ranking.state import SAFETY_CODES
from steering.rules import RuleService
from tests.conftest import make_key
from tests.steering.helpers import busiest_user as _user
from tests.steering.helpers import page as _page
from tests.steering.helpers import servable_unseen


def _main_topic(items: list[dict[str, Any]]) -> str:
    counts = Counter(t for i in items for t in i["topics"][:1])
    return str(counts.most_common(1)[0][0])


def test_rule_is_shown_back_applies_to_every_page_and_survives_a_restart(client: Any) -> None:
    uid = _user(client)
    h = make_key(client, "user", uid)
    eng = client.app.state.engine
    topic = _main_topic(_page(client, uid, h))
    r = client.post(f"/v1/users/{uid}/controls/rules", json={"text": f"never {topic}"}, headers=h)
    assert r.status_code == 201, r.text
    rule = r.json()
    assert rule["understood"]["never"] == [topic]
    assert rule["understood"]["author"] is None and rule["understood"]["after"] is None
    listed = client.get(f"/v1/users/{uid}/controls/rules", headers=h).json()["rules"]
    assert [x["rule_id"] for x in listed] == [rule["rule_id"]]
    for _ in range(2):  # every page, not only the next one
        assert all(topic not in i["topics"] for i in _page(client, uid, h))
    unseen = servable_unseen(eng, uid, topic=topic)
    body = client.get(f"/v1/users/{uid}/why-not/{unseen}", headers=h).json()
    assert body["filter"] == "mood_exclusions"
    assert body["rule"] == f"rule:{rule['rule_id']}:never {topic}"
    # Persisted: a service reading the store afresh (as after a restart) finds it.
    reloaded = RuleService(eng.store, eng.state, eng.steering.concepts)
    assert [x.text for x in reloaded.list(uid)] == [f"never {topic}"]
    # Removed: the clip is no longer held back by it.
    r = client.delete(f"/v1/users/{uid}/controls/rules/{rule['rule_id']}", headers=h)
    assert r.status_code == 204
    assert client.get(f"/v1/users/{uid}/controls/rules", headers=h).json()["rules"] == []
    body = client.get(f"/v1/users/{uid}/why-not/{unseen}", headers=h).json()
    assert body["filter"] != "mood_exclusions"
    assert RuleService(eng.store, eng.state, eng.steering.concepts).list(uid) == []


def test_rule_acts_on_one_creator_by_handle_and_names_itself_on_the_items(client: Any) -> None:
    uid = _user(client)
    h = make_key(client, "user", uid)
    eng = client.app.state.engine
    st = eng.state
    seen = st.activity.seen.get(uid, set())
    violative = SAFETY_CODES["violative"]
    # A creator with unseen clips of at least two topics: the rule keeps only one of them.
    by_author: dict[int, dict[str, list[int]]] = {}
    for r, item in enumerate(st.catalogue.item_ids):
        if (
            int(item) in seen
            or int(st.catalogue.maturity[r]) > 0
            or int(st.catalogue.safety[r]) >= violative
        ):
            continue
        by_author.setdefault(int(st.catalogue.author[r]), {}).setdefault(
            st.catalogue.topics[r][0], []
        ).append(int(item))
    author, topics = next((a, t) for a, t in by_author.items() if len(t) >= 2 and a != uid)
    keep, drop = sorted(topics, key=lambda t: -len(topics[t]))[:2]
    settings = dict(eng.store.get_user(author)["settings"])
    settings["handle"] = "chef_ana"
    eng.store.update_user_settings(author, settings)
    st.profiles.set_user_settings(author, settings)

    r = client.post(
        f"/v1/users/{uid}/controls/rules",
        json={"text": f"from @Chef_Ana only {keep}"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    rule = r.json()
    assert rule["understood"]["author_id"] == author
    assert rule["understood"]["author"] == "@chef_ana"
    assert rule["understood"]["only"] == [keep]
    label = f"rule:{rule['rule_id']}:from @Chef_Ana only {keep}"
    body = client.get(f"/v1/users/{uid}/why-not/{topics[drop][0]}", headers=h).json()
    assert body["filter"] == "mood_exclusions" and body["rule"] == label
    # Other creators' clips of that topic are not touched by it.
    other = next((i for a, t in by_author.items() if a != author for i in t.get(drop, [])), None)
    if other is not None:
        body = client.get(f"/v1/users/{uid}/why-not/{other}", headers=h).json()
        assert body.get("rule") != label

    # A "more" rule lifts its topic, and every item it acted on names it.
    r = client.post(f"/v1/users/{uid}/controls/rules", json={"text": f"more {keep}"}, headers=h)
    assert r.status_code == 201, r.text
    more = r.json()
    items = _page(client, uid, h)
    named = [i for i in items if f"rule:{more['rule_id']}:more {keep}" in _applied(i)]
    assert named, "the 'more' rule acted on no item"
    # It acts on clips like the topic (the concept's calibrated z), which need not name it;
    # clips that name it are among them.
    assert any(keep in i["topics"] or keep in i["caption"] for i in named)


def _applied(item: dict[str, Any]) -> list[str]:
    return list((item.get("explanation") or {}).get("rules_applied") or [])


def test_changing_a_rule_reads_it_again_and_a_bad_change_keeps_the_old(client: Any) -> None:
    uid = _user(client)
    h = make_key(client, "user", uid)
    base = f"/v1/users/{uid}/controls/rules"
    rule = client.post(base, json={"text": "never horror after 21:00"}, headers=h).json()
    assert rule["understood"]["never"] == ["horror"]
    assert rule["understood"]["after"] == "21:00" and rule["understood"]["before"] is None
    r = client.put(f"{base}/{rule['rule_id']}", json={"text": "less politics"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["understood"]["less"] == ["politics"]
    assert r.json()["understood"]["after"] is None
    r = client.put(f"{base}/{rule['rule_id']}", json={"text": "please"}, headers=h)
    assert r.status_code == 422
    assert "found nothing to apply" in r.json()["detail"]
    listed = client.get(base, headers=h).json()["rules"]
    assert [x["text"] for x in listed] == ["less politics"]


def test_unusable_rules_get_4xx_saying_what_to_fix(client: Any) -> None:
    uid = _user(client)
    h = make_key(client, "user", uid)
    base = f"/v1/users/{uid}/controls/rules"
    cases = {
        "from @nobody_here only recipes": "no creator with the handle @nobody_here",
        "after 21:00": "says who or when but not what to do",
        "never horror after 25:00": "not a time of day",
        "please thanks": "found nothing to apply",
        "from @a only x, from @b only y": "one creator",
    }
    for text, fix in cases.items():
        r = client.post(base, json={"text": text}, headers=h)
        assert r.status_code == 422, (text, r.text)
        assert fix in r.json()["detail"], (text, r.json())
    r = client.post(base, json={"text": "x" * 201}, headers=h)
    assert r.status_code == 422
    r = client.post(base, json={"text": "never news", "scope": "all"}, headers=h)
    assert r.status_code == 422  # unknown field
    assert client.put(f"{base}/nope", json={"text": "never news"}, headers=h).status_code == 404
    assert client.delete(f"{base}/nope", headers=h).status_code == 404
    assert client.get(base, headers=h).json()["rules"] == []


def test_time_window_follows_the_users_own_clock(engine: Any) -> None:
    st = engine.state
    uid = int(next(iter(st.activity.history)))
    rules = engine.steering.rules
    rule = rules.create(uid, "never horror between 21:00 and 6am")
    assert rule.scope.start_min == 21 * 60 and rule.scope.end_min == 6 * 60
    st.profiles.by_user[uid]["timezone"] = "UTC"
    assert [r.rule_id for r in rules.active(uid, now=datetime(2026, 1, 5, 22, 30))] == [
        rule.rule_id
    ]
    assert [r.rule_id for r in rules.active(uid, now=datetime(2026, 1, 5, 3, 0))] == [rule.rule_id]
    assert rules.active(uid, now=datetime(2026, 1, 5, 12, 0)) == []
    # 02:30 UTC is 21:30 in New York (EST): the rule applies there, not in Tokyo (11:30).
    st.profiles.by_user[uid]["timezone"] = "America/New_York"
    assert len(rules.active(uid, now=datetime(2026, 1, 5, 2, 30))) == 1
    st.profiles.by_user[uid]["timezone"] = "Asia/Tokyo"
    assert rules.active(uid, now=datetime(2026, 1, 5, 2, 30)) == []


def test_erasing_a_creator_or_the_user_removes_their_rules(engine: Any) -> None:
    from pipelines.serving.erasure import erase_user

    st = engine.state
    users = sorted(st.activity.history)
    uid, other = int(users[0]), int(users[1])
    author = next(int(a) for a in st.catalogue.by_author if int(a) not in (uid, other))
    rules = engine.steering.rules
    about = rules.create(uid, f"from @{author} never news")
    kept = rules.create(uid, "less politics")
    mine = rules.create(other, "never horror")
    erase_user(engine, author)
    assert [r.rule_id for r in rules.list(uid)] == [kept.rule_id]
    left = engine.store.query("SELECT rule_id FROM standing_rules")["rule_id"].to_list()
    assert about.rule_id not in left and kept.rule_id in left
    erase_user(engine, other)
    assert rules.list(other) == []
    left = engine.store.query("SELECT rule_id FROM standing_rules")["rule_id"].to_list()
    assert mine.rule_id not in left
