"""Steering through the real app on the tiny world: moods, controls, interests, why-not."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tests.conftest import make_key
from tests.steering.helpers import busiest_user as _user
from tests.steering.helpers import page as _page
from tests.steering.helpers import servable_unseen, wait_until_seen


def _topic_of_page(items: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for i in items:
        for t in i["topics"][:1]:
            counts[t] = counts.get(t, 0) + 1
    return max(counts, key=lambda t: counts[t])


def test_mood_changes_the_next_page_and_shows_how_it_was_understood(client: Any) -> None:
    uid = _user(client)
    h = make_key(client, "user", uid)
    # What the user saw before this test (the world's history) can never come back.
    seen_before = set(client.app.state.engine.state.activity.seen.get(uid, set()))
    before = _page(client, uid, h)
    r = client.post(f"/v1/users/{uid}/mood", json={"text": "cooking and baking"}, headers=h)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["understood"]["facets"]
    after = _page(client, uid, h)
    assert [i["item_id"] for i in after] != [i["item_id"] for i in before]
    food = {"cooking", "baking"}
    # The page allows two clips per creator; the tiny world's food clips come from few creators,
    # so the most a page can hold is bounded by that cap. Clips the user has already seen can
    # never come back (nor can the first page's), so they do not count as reachable.
    eng = client.app.state.engine
    st = eng.state
    seen = seen_before | {i["item_id"] for i in before}
    per_author: dict[int, int] = {}
    for r, ts in enumerate(st.catalogue.topics):
        if (
            food & set(ts)
            and int(st.catalogue.maturity[r]) <= 1
            and int(st.catalogue.item_ids[r]) not in seen
        ):
            a = int(st.catalogue.author[r])
            per_author[a] = min(2, per_author.get(a, 0) + 1)
    reachable = min(10, sum(per_author.values()))
    assert reachable >= 4
    assert sum(1 for i in after[:10] if food & set(i["topics"])) >= min(6, reachable)
    assert sum(1 for i in before[:10] if food & set(i["topics"])) <= 3
    assert any(i["source"] == "mood" for i in after)
    assert after[0]["explanation"]["mood"] == "cooking and baking"
    assert after[0]["explanation"]["mood_match"] is not None


def test_negated_topic_never_reaches_the_page_and_delete_undoes_it(client: Any) -> None:
    uid = _user(client)
    h = make_key(client, "user", uid)
    topic = _topic_of_page(_page(client, uid, h))
    r = client.post(f"/v1/users/{uid}/mood", json={"text": f"no {topic}"}, headers=h)
    assert r.status_code == 201, r.text
    assert topic in r.json()["understood"]["exclusions"][0]
    assert all(topic not in i["topics"] for i in _page(client, uid, h, 30))
    mood_id = r.json()["mood_id"]
    assert client.get(f"/v1/users/{uid}/mood", headers=h).json()["moods"][0]["mood_id"] == mood_id
    assert client.delete(f"/v1/users/{uid}/mood/{mood_id}", headers=h).status_code == 204
    assert any(topic in i["topics"] for i in _page(client, uid, h, 30))
    assert client.delete(f"/v1/users/{uid}/mood/{mood_id}", headers=h).status_code == 404


def test_standing_rule_persists_across_sessions(client: Any) -> None:
    uid = _user(client)
    h = make_key(client, "user", uid)
    topic = _topic_of_page(_page(client, uid, h))
    r = client.put(f"/v1/users/{uid}/controls", json={"never_show": [topic]}, headers=h)
    assert r.status_code == 200, r.text
    for _ in range(2):  # two fresh sessions (no cursor)
        assert all(topic not in i["topics"] for i in _page(client, uid, h, 30))
    assert client.get(f"/v1/users/{uid}/controls", headers=h).json()["never_show"] == [topic]
    eng = client.app.state.engine
    assert eng.store.get_user(uid)["settings"]["never_show"] == [topic]


def test_interests_listed_and_never_removes_the_topic(client: Any) -> None:
    uid = _user(client)
    h = make_key(client, "user", uid)
    r = client.get(f"/v1/users/{uid}/interests", headers=h)
    assert r.status_code == 200
    interests = r.json()["interests"]
    assert interests and interests[0]["weight"] >= interests[-1]["weight"]
    topic = _topic_of_page(_page(client, uid, h))
    r = client.post(f"/v1/users/{uid}/interests/{topic}", params={"action": "never"}, headers=h)
    assert r.status_code == 200, r.text
    assert all(topic not in i["topics"] for i in _page(client, uid, h, 30))
    listed = client.get(f"/v1/users/{uid}/interests", headers=h).json()["interests"]
    assert any(i["name"] == topic and i["rule"] == "never" for i in listed)


def test_why_not_names_every_filter_that_removes_the_clip(client: Any) -> None:
    uid = _user(client)
    h = make_key(client, "user", uid)
    eng = client.app.state.engine
    clip = _page(client, uid, h)[0]
    topic = clip["topics"][0]
    # The served clip's impression is written in the background: wait for it, so the clip is
    # both seen and ruled out by the new rule whatever the timing.
    wait_until_seen(eng, uid, clip["item_id"])
    r = client.put(f"/v1/users/{uid}/controls", json={"never_show": [topic]}, headers=h)
    assert r.status_code == 200, r.text
    body = client.get(f"/v1/users/{uid}/why-not/{clip['item_id']}", headers=h).json()
    assert body["status"] == "filtered" and body["filter"] == "already_seen"
    assert {"filter": "mood_exclusions", "rule": f"never_show:{topic}"} in body["all_filters"]
    unseen = servable_unseen(eng, uid, topic=topic)
    body = client.get(f"/v1/users/{uid}/why-not/{unseen}", headers=h).json()
    assert body["filter"] == "mood_exclusions"
    assert body["rule"] == f"never_show:{topic}"
    assert topic in body["message"]


def test_response_shows_every_part_of_the_understanding(client: Any) -> None:
    uid = _user(client)
    h = make_key(client, "user", uid)
    text = "calm cats or cooking for 20 minutes, no news, only family friendly"
    r = client.post(f"/v1/users/{uid}/mood", json={"text": text}, headers=h)
    assert r.status_code == 201, r.text
    body = r.json()
    u = body["understood"]
    assert u["facets"] == ["calm cats", "cooking"]
    assert u["exclusions"] == ["news"]
    assert u["energy"] < 0 and u["expires_in_s"] == 1200 and u["maturity_max"] == 0
    created = datetime.fromisoformat(body["created_at"])
    assert datetime.fromisoformat(body["expires_at"]) - created == timedelta(minutes=20)
    r = client.post(
        f"/v1/users/{uid}/mood", json={"text": "only dogs", "scope": "standing"}, headers=h
    )
    assert r.status_code == 201, r.text
    assert r.json()["understood"]["restrict_to"] == ["dogs"]
    assert r.json()["expires_at"] is None  # standing: until deleted
    listed = client.get(f"/v1/users/{uid}/mood", headers=h).json()["moods"]
    assert [m["text"] for m in listed] == [text, "only dogs"]


def test_only_restricts_the_page_and_the_maturity_word_caps_it(client: Any) -> None:
    uid = _user(client)
    h = make_key(client, "user", uid)
    eng = client.app.state.engine
    st = eng.state
    counts: dict[str, int] = {}
    for ts in st.catalogue.topics:
        for t in ts[:1]:
            counts[t] = counts.get(t, 0) + 1
    before = _page(client, uid, h, 10)

    def before_share(t: str) -> float:
        return sum(t in i["topics"] for i in before) / len(before)

    # Among the three topics with the most clips (so the restriction can fill a page), the one
    # least on the page before: the cold page may already be all of the biggest topic.
    biggest = sorted(counts, key=lambda t: -counts[t])[:3]
    topic = min(biggest, key=before_share)
    r = client.post(
        f"/v1/users/{uid}/mood", json={"text": f"only {topic}, kid friendly"}, headers=h
    )
    assert r.status_code == 201, r.text
    assert r.json()["understood"]["restrict_to"] == [topic]
    items = _page(client, uid, h, 10)
    share = sum(topic in i["topics"] for i in items) / len(items)
    assert share >= 0.8 and share > before_share(topic)
    assert all(int(st.catalogue.maturity[st.catalogue.row_of[i["item_id"]]]) == 0 for i in items)


def test_mood_over_the_cap_evicts_the_oldest_and_is_created(client: Any) -> None:
    uid = _user(client)
    h = make_key(client, "user", uid)
    eng = client.app.state.engine
    cap = eng.steering.moods.settings.max_active
    ids = []
    for i in range(cap + 2):
        r = client.post(f"/v1/users/{uid}/mood", json={"text": f"cats number {i}"}, headers=h)
        assert r.status_code == 201, r.text
        ids.append(r.json()["mood_id"])
    listed = [m["mood_id"] for m in client.get(f"/v1/users/{uid}/mood", headers=h).json()["moods"]]
    assert listed == ids[-cap:]
    assert client.delete(f"/v1/users/{uid}/mood/{ids[0]}", headers=h).status_code == 404
    deleted = eng.store.query(
        "SELECT mood_id FROM moods WHERE user_id = ? AND deleted_at IS NOT NULL", [uid]
    )["mood_id"].to_list()
    assert set(deleted) == set(ids[:2])
    assert client.delete(f"/v1/users/{uid}/mood/{ids[-1]}", headers=h).status_code == 204


def test_user_key_cannot_set_another_users_mood(client: Any) -> None:
    uid = _user(client)
    other = next(u for u in client.app.state.engine.state.profiles.users if u != uid)
    h = make_key(client, "user", other)
    r = client.post(f"/v1/users/{uid}/mood", json={"text": "cats"}, headers=h)
    assert r.status_code == 403


def test_empty_mood_is_422_and_too_long_names_the_limit(client: Any) -> None:
    uid = _user(client)
    h = make_key(client, "user", uid)
    assert client.post(f"/v1/users/{uid}/mood", json={"text": "   "}, headers=h).status_code == 422
    r = client.post(f"/v1/users/{uid}/mood", json={"text": "cats " * 200}, headers=h)
    assert r.status_code == 413
    assert "500" in r.json()["detail"]
    # Far over any sensible prompt: refused by body validation before parsing.
    r = client.post(f"/v1/users/{uid}/mood", json={"text": "x" * 20_000}, headers=h)
    assert r.status_code == 422 and "10000" in r.text


def test_personalized_false_serves_following_only_newest_first(client: Any) -> None:
    uid = _user(client)
    h = make_key(client, "user", uid)
    eng = client.app.state.engine
    client.put(f"/v1/users/{uid}/controls", json={"personalized": False}, headers=h)
    items = _page(client, uid, h)
    following = eng.state.graph.following.get(uid, set())
    assert all(i["author_id"] in following for i in items)
    assert all(i["source"] == "following" for i in items)


def test_x_but_not_y_keeps_x(client: Any) -> None:
    # "animals but not cats": the dog clips are somewhat like "cats" but more like "animals";
    # they stay and fill the page, while every cat clip goes.
    eng = client.app.state.engine
    st = eng.state
    uid = int(min(st.activity.history, key=lambda u: len(st.activity.seen.get(u, ()))))
    h = make_key(client, "user", uid)
    before = _page(client, uid, h)
    r = client.post(f"/v1/users/{uid}/mood", json={"text": "animals but not cats"}, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["understood"]["facets"] == ["animals"]
    assert r.json()["understood"]["exclusions"] == ["cats"]
    after = _page(client, uid, h)
    assert not [i for i in after if "cats" in i["topics"]]
    # X stays: the defect was a page with no animals at all (every "funny" clip but the cats).
    # The page before is not a floor: the person's calibrated mix may already hold dogs.
    dogs_before = sum("dogs" in i["topics"] for i in before)
    dogs_after = sum("dogs" in i["topics"] for i in after)
    assert dogs_after >= 4, (dogs_before, dogs_after)
