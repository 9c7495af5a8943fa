"""Standing controls, interests, explanations and access rules through the real app."""

from __future__ import annotations

from typing import Any

from ranking.overrides import RequestOverrides
from steering.scorers.mood import MoodScorer
from tests.conftest import make_key
from tests.steering.helpers import busiest_user as _user
from tests.steering.helpers import page as _page
from tests.steering.helpers import servable_unseen, wait_until_seen


def _share(items: list[dict[str, Any]], topic: str, k: int = 20) -> int:
    return sum(1 for i in items[:k] if topic in i["topics"])


def test_mood_scorer_follows_the_value_scorers_once(client: Any) -> None:
    eng = client.app.state.engine
    scorers = list(eng.products["home"].scorers)
    assert sum(isinstance(s, MoodScorer) for s in scorers) == 1
    names = [s.name for s in scorers]
    assert names.index("mood") > max(names.index("learned_value"), names.index("hand_weighted"))


def test_mood_strength_override_dials_the_mood(client: Any) -> None:
    uid = _user(client)
    h = make_key(client, "user", uid)
    eng = client.app.state.engine
    assert client.post(f"/v1/users/{uid}/mood", json={"text": "dogs"}, headers=h).status_code == 201
    strong = eng.feed(uid, overrides=RequestOverrides(mood_strength=1.0)).items
    off = eng.feed(uid, overrides=RequestOverrides(mood_strength=0.0)).items
    assert _share([{"topics": i.topics} for i in strong], "dogs", 10) > _share(
        [{"topics": i.topics} for i in off], "dogs", 10
    )


def test_more_and_less_of_an_interest_move_the_next_page(client: Any) -> None:
    uid = _user(client)
    h = make_key(client, "user", uid)
    interests = client.get(f"/v1/users/{uid}/interests", headers=h).json()["interests"]
    names = [i["name"] for i in interests]
    top = names[0]
    eng = client.app.state.engine
    eng.writer.flush()
    seen = set(eng.state.activity.seen.get(uid, set()))
    last: list[dict[str, Any]] = []

    def page_from_the_same_history() -> list[dict[str, Any]]:
        # Each compared page is drawn from the same history: the impressions of the pages
        # before it are forgotten, so the clips they used up do not count against it. The
        # previous page's impressions are logged in the background: wait for them first, or
        # they land after the reset and the page compared with it loses those clips.
        if last:
            wait_until_seen(eng, uid, int(last[-1]["item_id"]))
        eng.writer.flush()
        eng.state.activity.seen[uid] = set(seen)
        last[:] = _page(client, uid, h)
        return list(last)

    before = _share(page_from_the_same_history(), top)
    r = client.post(f"/v1/users/{uid}/interests/{top}", params={"action": "less"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["controls"]["less_of"] == [top]
    assert _share(page_from_the_same_history(), top) < before
    # A topic the user barely watches, marked "more", gains places.
    rare = "science" if "science" not in names[:3] else "cars"
    base_rare = _share(page_from_the_same_history(), rare)
    r = client.post(f"/v1/users/{uid}/interests/{rare}", params={"action": "more"}, headers=h)
    assert r.status_code == 200
    assert _share(page_from_the_same_history(), rare) > base_rare
    # The latest choice wins: "more" took the topic out of no other list but its own.
    ctrl = client.get(f"/v1/users/{uid}/controls", headers=h).json()
    assert ctrl["more_of"] == [rare] and ctrl["less_of"] == [top]
    bad = client.post(f"/v1/users/{uid}/interests/{rare}", params={"action": "maybe"}, headers=h)
    assert bad.status_code == 422


def test_muted_author_and_muted_word_are_removed_and_explained(client: Any) -> None:
    uid = _user(client)
    h = make_key(client, "user", uid)
    eng = client.app.state.engine
    items = _page(client, uid, h)
    wait_until_seen(eng, uid, items[0]["item_id"])
    clip = servable_unseen(eng, uid)
    author = int(eng.state.catalogue.author[eng.state.catalogue.row_of[clip]])
    word = items[1]["topics"][0]
    r = client.put(
        f"/v1/users/{uid}/controls",
        json={"muted_authors": [author], "muted_words": [word]},
        headers=h,
    )
    assert r.status_code == 200, r.text
    after = _page(client, uid, h, 30)
    assert all(i["author_id"] != author for i in after)
    assert all(word not in i["topics"] for i in after)
    why = client.get(f"/v1/users/{uid}/why-not/{clip}", headers=h).json()
    assert why["status"] == "filtered" and why["filter"] == "mood_exclusions"
    assert why["rule"] == f"muted_author:{author}"
    seen_clip = items[0]["item_id"]
    why = client.get(f"/v1/users/{uid}/why-not/{seen_clip}", headers=h).json()
    assert why["filter"] == "already_seen"


def test_connected_vs_global_dial_moves_followed_creators(client: Any) -> None:
    uid = _user(client)
    h = make_key(client, "user", uid)
    following = client.app.state.engine.state.graph.following.get(uid, set())
    assert following

    def followed_places(dial: float) -> list[int]:
        r = client.put(f"/v1/users/{uid}/controls", json={"connected_vs_global": dial}, headers=h)
        assert r.status_code == 200, r.text
        return [k for k, i in enumerate(_page(client, uid, h, 30)) if i["author_id"] in following]

    connected, global_ = followed_places(1.0), followed_places(0.0)
    assert connected
    # Followed creators move up the page (and never fewer of them make it).
    assert len(connected) >= len(global_)
    if global_:
        assert sum(connected) / len(connected) < sum(global_) / len(global_)


def test_each_item_says_why_it_is_there(client: Any) -> None:
    uid = _user(client)
    h = make_key(client, "user", uid)
    client.put(f"/v1/users/{uid}/controls", json={"connected_vs_global": 0.9}, headers=h)
    client.post(f"/v1/users/{uid}/mood", json={"text": "calm nature"}, headers=h)
    for item in _page(client, uid, h):
        ex = item["explanation"]
        assert ex["source"] == item["source"]
        assert ex["top_features"]
        assert ex["mood"] == "calm nature"
        assert 0.0 <= ex["mood_match"] <= 1.0
        assert "connected_vs_global=0.9" in ex["rules_applied"]


def test_why_not_for_a_clip_no_source_found(client: Any) -> None:
    uid = _user(client)
    h = make_key(client, "user", uid)
    eng = client.app.state.engine
    page = {i["item_id"] for i in _page(client, uid, h, 50)}
    seen = eng.state.activity.seen.get(uid, set())
    clip = next(
        int(i) for i in eng.state.catalogue.item_ids if int(i) not in page and int(i) not in seen
    )
    body = client.get(f"/v1/users/{uid}/why-not/{clip}", headers=h).json()
    assert body["status"] in {"not_retrieved", "filtered", "on_page"}
    assert body["message"]
    assert client.get(f"/v1/users/{uid}/why-not/999999999", headers=h).status_code == 404


def test_invalid_controls_are_422_naming_the_field(client: Any) -> None:
    uid = _user(client)
    h = make_key(client, "user", uid)
    r = client.put(f"/v1/users/{uid}/controls", json={"connected_vs_global": 3}, headers=h)
    assert r.status_code == 422 and "connected_vs_global" in r.text
    r = client.put(f"/v1/users/{uid}/controls", json={"never_shw": ["news"]}, headers=h)
    assert r.status_code == 422 and "never_shw" in r.text
    r = client.post(f"/v1/users/{uid}/mood", json={"text": "cats", "scope": "forever"}, headers=h)
    assert r.status_code == 422 and "scope" in r.text


def test_maturity_dial_caps_what_is_shown(client: Any) -> None:
    uid = _user(client)
    h = make_key(client, "user", uid)
    eng = client.app.state.engine
    r = client.put(f"/v1/users/{uid}/controls", json={"maturity_max": 0}, headers=h)
    assert r.status_code == 200
    for i in _page(client, uid, h, 30):
        assert int(eng.state.catalogue.maturity[eng.state.catalogue.row_of[i["item_id"]]]) == 0


def test_non_english_prompt_is_kept_whole_with_a_warning(client: Any) -> None:
    uid = _user(client)
    h = make_key(client, "user", uid)
    r = client.post(
        f"/v1/users/{uid}/mood", json={"text": "je veux voir des chats mignons"}, headers=h
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["understood"]["language"] == "unknown"
    assert body["warnings"] and "English" in body["warnings"][0]


def test_roles_user_key_only_for_itself_analyst_read_only_admin_any(client: Any) -> None:
    uid = _user(client)
    eng = client.app.state.engine
    other = next(u for u in eng.state.profiles.users if u != uid)
    own = make_key(client, "user", other)
    for path in (
        "interests",
        "controls",
        "mood",
        f"why-not/{int(eng.state.catalogue.item_ids[0])}",
    ):
        assert client.get(f"/v1/users/{uid}/{path}", headers=own).status_code == 403
    assert (
        client.put(f"/v1/users/{uid}/controls", json={"muted_words": ["x"]}, headers=own)
    ).status_code == 403
    analyst = make_key(client, "analyst")
    r = client.post(f"/v1/users/{uid}/mood", json={"text": "cats"}, headers=analyst)
    assert r.status_code == 403
    admin = make_key(client, "admin")
    assert client.get(f"/v1/users/{uid}/interests", headers=admin).status_code == 200
    assert client.get(f"/v1/users/{uid}/interests").status_code == 401
