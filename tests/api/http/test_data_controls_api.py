"""Data controls and the city signal through the real app: read, change, validate, show in
"what we think you like", serve a page with a city, and erase with the person."""

from __future__ import annotations

from typing import Any

from tests.conftest import make_key

SIGNALS = (
    "location",
    "watch_time",
    "friends_activity",
    "interaction_history",
    "satisfaction_model",
)


def _adult(client: Any) -> int:
    st = client.app.state.engine.state
    return int(
        max(
            (u for u, p in st.profiles.by_user.items() if not p.get("is_teen")),
            key=lambda u: len(st.activity.history[u].rows) if u in st.activity.history else 0,
        )
    )


def _teen(client: Any) -> int:
    st = client.app.state.engine.state
    return int(min(u for u, p in st.profiles.by_user.items() if p.get("is_teen")))


def _a_city(client: Any) -> str:
    eng = client.app.state.engine
    return str(sorted(eng.clip_cities.known())[0])


def test_defaults_differ_for_adults_and_teens(client: Any) -> None:
    adult, teen = _adult(client), _teen(client)
    a = client.get(f"/v1/users/{adult}/data-controls", headers=make_key(client, "user", adult))
    t = client.get(f"/v1/users/{teen}/data-controls", headers=make_key(client, "user", teen))
    assert a.status_code == t.status_code == 200
    a_sig, t_sig = a.json()["signals"], t.json()["signals"]
    assert set(a_sig) == set(SIGNALS) and set(t_sig) == set(SIGNALS)
    assert all(s["on"] and s["set_by"] == "default" and s["used_for"] for s in a_sig.values())
    assert t_sig["location"] == {**t_sig["location"], "on": False, "default": False}
    assert all(t_sig[s]["on"] for s in SIGNALS if s != "location")
    assert a.json()["city"] is None and a.json()["off"] == []


def test_turning_signals_off_and_back_to_the_default(client: Any) -> None:
    uid = _adult(client)
    h = make_key(client, "user", uid)
    r = client.put(
        f"/v1/users/{uid}/data-controls",
        json={"watch_time": False, "friends_activity": False},
        headers=h,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["off"] == ["watch_time", "friends_activity"]
    assert body["signals"]["watch_time"] == {**body["signals"]["watch_time"], "set_by": "you"}
    # Stored: a fresh read, and the store's row, say the same.
    again = client.get(f"/v1/users/{uid}/data-controls", headers=h).json()
    assert again["off"] == ["watch_time", "friends_activity"]
    eng = client.app.state.engine
    row = eng.store.query("SELECT * FROM data_controls WHERE user_id = ?", [uid]).row(0, named=True)
    assert row["watch_time"] is False and row["friends_activity"] is False
    assert row["location"] is None  # not chosen: the default applies
    # null puts a signal back to its default; all defaults leave no row.
    r = client.put(
        f"/v1/users/{uid}/data-controls",
        json={"watch_time": None, "friends_activity": None},
        headers=h,
    )
    assert r.json()["off"] == []
    assert eng.store.query("SELECT * FROM data_controls WHERE user_id = ?", [uid]).height == 0


def test_bad_data_controls_are_4xx_saying_what_to_fix(client: Any) -> None:
    uid = _adult(client)
    h = make_key(client, "user", uid)
    url = f"/v1/users/{uid}/data-controls"
    r = client.put(url, json={"gps": True}, headers=h)
    assert r.status_code == 422 and "gps" in r.text
    r = client.put(url, json={"watch_time": "no"}, headers=h)
    assert r.status_code == 422 and "watch_time" in r.text and "bool" in r.text.lower()
    for coords in ("38.7223,-9.1393", "40.4168 N 3.7038 W", "Rua Augusta 12"):
        r = client.put(url, json={"city": coords}, headers=h)
        assert r.status_code == 422, coords
        assert "city" in r.json()["detail"], r.text
    city = _a_city(client)
    r = client.put(url, json={"city": city + "q"}, headers=h)
    assert r.status_code == 422 and "did you mean" in r.json()["detail"]
    r = client.get("/v1/feed", params={"user_id": uid, "city": "38.72,-9.13"}, headers=h)
    assert r.status_code == 422 and "coordinates" in r.json()["detail"]
    # Nothing bad was stored.
    assert client.get(url, headers=h).json()["city"] is None


def test_city_from_the_profile_and_from_the_client(client: Any) -> None:
    uid = _adult(client)
    h = make_key(client, "user", uid)
    city = _a_city(client)
    r = client.put(f"/v1/users/{uid}/data-controls", json={"city": f"  {city.title()} "}, headers=h)
    assert r.status_code == 200
    assert r.json()["city"] == city and r.json()["city_in_use"] == city
    assert r.json()["city_source"] == "your profile"
    r = client.get("/v1/feed", params={"user_id": uid, "city": city.upper()}, headers=h)
    assert r.status_code == 200 and r.json()["items"]
    # Location off: the city is kept but not used.
    r = client.put(f"/v1/users/{uid}/data-controls", json={"location": False}, headers=h)
    assert r.json()["city"] == city and r.json()["city_in_use"] is None
    # Forgetting the city.
    r = client.put(f"/v1/users/{uid}/data-controls", json={"city": None}, headers=h)
    assert r.json()["city"] is None


def test_what_we_think_you_like_shows_the_data_controls(client: Any) -> None:
    uid = _adult(client)
    h = make_key(client, "user", uid)
    before = client.get(f"/v1/users/{uid}/interests", headers=h).json()
    assert before["interests"] and before["data_controls"]["off"] == []
    assert "how long you watch" in before["inferred_from"]
    client.put(f"/v1/users/{uid}/data-controls", json={"watch_time": False}, headers=h)
    no_watch = client.get(f"/v1/users/{uid}/interests", headers=h).json()
    assert no_watch["data_controls"]["off"] == ["watch_time"]
    assert "watch time is off" in no_watch["inferred_from"]
    client.put(f"/v1/users/{uid}/data-controls", json={"watch_time": None}, headers=h)
    client.put(f"/v1/users/{uid}/data-controls", json={"interaction_history": False}, headers=h)
    after = client.get(f"/v1/users/{uid}/interests", headers=h).json()
    assert after["data_controls"]["off"] == ["interaction_history"]
    assert after["inferred_from"].startswith("nothing")
    # Nothing inferred: only the person's own rules would be listed (none here).
    assert after["interests"] == []


def test_erasure_removes_the_data_controls(client: Any) -> None:
    eng = client.app.state.engine
    st = eng.state
    # A creator: their clips carry a city that must leave memory with them.
    uid = int(
        next(
            a
            for i, a in zip(st.catalogue.item_ids, st.catalogue.author, strict=True)
            if eng.clip_cities.city_of(int(i)) and not st.profiles.by_user[int(a)].get("is_teen")
        )
    )
    theirs = [
        int(i)
        for i, a in zip(st.catalogue.item_ids, st.catalogue.author, strict=True)
        if int(a) == uid
    ]
    assert all(eng.clip_cities.city_of(i) for i in theirs)
    h = make_key(client, "user", uid)
    r = client.put(
        f"/v1/users/{uid}/data-controls",
        json={"city": _a_city(client), "watch_time": False},
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert eng.store.query("SELECT * FROM data_controls WHERE user_id = ?", [uid]).height == 1
    token = client.delete(f"/v1/users/{uid}", headers=h).json()["confirm_token"]
    r = client.delete(f"/v1/users/{uid}", params={"confirm": token}, headers=h)
    assert r.status_code == 200, r.text
    assert eng.store.query("SELECT * FROM data_controls WHERE user_id = ?", [uid]).height == 0
    assert eng.data_controls.get(uid).is_default()
    # The person's clips and their cities are gone too, from the store and from memory.
    mine = eng.store.query("SELECT count(*) AS n FROM clips WHERE author_id = ?", [uid])
    assert mine["n"][0] == 0
    assert all(eng.clip_cities.city_of(i) is None for i in theirs)


def test_clips_added_over_the_api_carry_a_city_never_coordinates(client: Any) -> None:
    h = make_key(client, "service")
    eng = client.app.state.engine
    author = _adult(client)
    bad = {"item_id": 10**9 + 1, "author_id": author, "caption": "harbour", "city": "38.7,-9.1"}
    r = client.post("/v1/clips", json={"clips": [bad]}, headers=h)
    assert r.status_code == 422 and "city" in r.text
    good = {**bad, "city": " Porto "}
    r = client.post("/v1/clips", json={"clips": [good]}, headers=h)
    assert r.status_code == 201, r.text
    assert eng.clip_cities.city_of(10**9 + 1) == "porto"
    assert "porto" in eng.clip_cities.known()  # a person may now choose it
    uid = _adult(client)
    r = client.put(
        f"/v1/users/{uid}/data-controls",
        json={"city": "Porto"},
        headers=make_key(client, "user", uid),
    )
    assert r.status_code == 200 and r.json()["city_in_use"] == "porto"


PARENT_ID = 9_000_004


def test_a_linked_parent_sees_and_sets_a_teens_data_controls_others_cannot(client: Any) -> None:
    teen = _teen(client)
    parent = make_key(client, "parent", PARENT_ID)
    url = f"/v1/users/{teen}/data-controls"
    assert client.get(url, headers=parent).status_code == 403  # not linked yet
    link = {"parent_id": PARENT_ID, "child_id": teen}
    assert (
        client.post("/v1/parental/links", json=link, headers=make_key(client, "admin")).status_code
        == 201
    )
    r = client.put(url, json={"friends_activity": False}, headers=parent)
    assert r.status_code == 200, r.text
    assert r.json()["off"] == ["location", "friends_activity"]  # location: the teen default
    other = _adult(client)
    r = client.get(url, headers=make_key(client, "user", other))
    assert r.status_code == 403
