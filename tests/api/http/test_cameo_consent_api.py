"""A person's likeness only by their consent, through the real app: on pages, at the media
route, for teens (a linked parent approves, at most friends), and in the demo world."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelines.generation.filters.cameo_consent import may_see
from pipelines.serving.jobs import JobContext, run_job
from storage.erasure import is_user_column
from tests.conftest import TINY_GEN_ENV, make_key


def _keys(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [str(k) for k in obj] + [k for v in obj.values() for k in _keys(v)]
    if isinstance(obj, list):
        return [k for v in obj for k in _keys(v)]
    return []


def _blocked_by_consent(client: Any, viewer: int, item: int) -> bool:
    """Whether the cameo filter keeps ``item`` off ``viewer``'s pages (asked via why-not)."""
    r = client.get(f"/v1/users/{viewer}/why-not/{item}", headers=make_key(client, "service"))
    assert r.status_code == 200, r.text
    return "cameo_consent" in [f["filter"] for f in r.json().get("all_filters", [])]


def _cast(engine: Any, *, teen: bool) -> tuple[int, int, int]:
    """A person with friends and no consent on record, one friend, one stranger."""
    st = engine.state
    consents = engine.generation.consents
    person = next(
        u
        for u in sorted(st.profiles.users)
        if st.graph.friends(u)
        and consents.get(u) is None
        and bool(st.profiles.by_user[u]["is_teen"]) == teen
    )
    friend = min(st.graph.friends(person))
    stranger = next(
        u for u in sorted(st.profiles.users) if u != person and u not in st.graph.friends(person)
    )
    return person, friend, stranger


def _post_cameo_clip(client: Any, item: int, author: int, person: int) -> None:
    clip = {"item_id": item, "author_id": author, "caption": "a walk by the river",
            "cameo_user_ids": [person]}  # fmt: skip
    r = client.post("/v1/clips", json={"clips": [clip]}, headers=make_key(client, "service"))
    assert r.status_code == 201, r.text


def test_a_clip_showing_someone_reaches_only_the_audience_they_chose(client: Any) -> None:
    eng = client.app.state.engine
    person, friend, stranger = _cast(eng, teen=False)
    item = 910_000_001
    _post_cameo_clip(client, item, friend, person)
    me = make_key(client, "user", person)
    url = f"/v1/users/{person}/cameo-consent"

    # No consent on record: nobody but the person sees it.
    assert client.get(url, headers=me).json()["effective_audience"] == "none"
    assert _blocked_by_consent(client, friend, item)
    assert _blocked_by_consent(client, stranger, item)
    assert not _blocked_by_consent(client, person, item)

    assert client.put(url, json={"audience": "friends"}, headers=me).status_code == 200
    assert not _blocked_by_consent(client, friend, item)
    assert _blocked_by_consent(client, stranger, item)

    assert client.put(url, json={"audience": "everyone"}, headers=me).status_code == 200
    assert not _blocked_by_consent(client, friend, item)
    assert not _blocked_by_consent(client, stranger, item)

    assert client.put(url, json={"audience": "none"}, headers=me).status_code == 200
    assert _blocked_by_consent(client, stranger, item)
    assert client.put(url, json={"audience": "everyone"}, headers=me).status_code == 200
    assert client.delete(url, headers=me).status_code == 200  # revoked: back to nobody
    assert _blocked_by_consent(client, friend, item)
    assert _blocked_by_consent(client, stranger, item)


def test_only_the_person_gives_consent_and_an_admin_can_only_revoke(client: Any) -> None:
    eng = client.app.state.engine
    person, friend, _ = _cast(eng, teen=False)
    url = f"/v1/users/{person}/cameo-consent"
    body = {"audience": "everyone"}
    assert client.put(url, json=body, headers=make_key(client, "admin")).status_code == 403
    assert client.put(url, json=body, headers=make_key(client, "user", friend)).status_code == 403
    assert client.put(url, json=body, headers=make_key(client, "service")).status_code == 200
    r = client.delete(url, headers=make_key(client, "admin"))
    assert r.status_code == 200 and r.json()["consent"]["effective_audience"] == "none"


def test_a_teens_likeness_reaches_friends_at_most_and_only_with_a_parents_approval(
    client: Any,
) -> None:
    eng = client.app.state.engine
    teen, friend, stranger = _cast(eng, teen=True)
    parent = next(u for u in sorted(eng.state.profiles.users) if u not in (teen, friend, stranger))
    other_parent = next(
        u for u in sorted(eng.state.profiles.users) if u not in (teen, friend, stranger, parent)
    )
    admin = make_key(client, "admin")
    for p in (parent,):
        r = client.post(
            "/v1/parental/links", json={"parent_id": p, "child_id": teen}, headers=admin
        )
        assert r.status_code == 201, r.text
    hp, hq = make_key(client, "parent", parent), make_key(client, "parent", other_parent)
    ht = make_key(client, "user", teen)
    url = f"/v1/users/{teen}/cameo-consent"
    approve = f"/v1/parental/children/{teen}/cameo-consent/approval"

    # A parent cannot give or widen the teen's consent (the reported hole: 'everyone').
    for audience in ("everyone", "friends"):
        r = client.put(url, json={"audience": audience}, headers=hp)
        assert r.status_code == 403 and "only the teen" in r.json()["detail"], r.text
    # The teen cannot go beyond friends.
    r = client.put(url, json={"audience": "everyone"}, headers=ht)
    assert r.status_code == 422 and "at most" in r.json()["detail"]
    assert (
        client.put(
            url, json={"audience": "everyone"}, headers=make_key(client, "service")
        ).status_code
        == 422
    )

    r = client.put(url, json={"audience": "friends"}, headers=ht)
    assert r.status_code == 200 and r.json()["parent_approval"] == "pending"
    assert r.json()["effective_audience"] == "none"
    item = 910_000_002
    _post_cameo_clip(client, item, friend, teen)
    assert _blocked_by_consent(client, friend, item)  # not approved yet
    ask = {"user_id": friend, "prompt": "friends skating in the park", "cameos": [teen]}
    hf = make_key(client, "user", friend)
    assert client.post("/v1/generations", json=ask, headers=hf).status_code == 403

    assert client.post(approve, headers=hq).status_code == 403  # not this teen's parent
    assert client.post(approve, headers=ht).status_code == 403  # not a parent key
    r = client.post(approve, headers=hp)
    assert r.status_code == 200 and r.json()["effective_audience"] == "friends", r.text
    assert not _blocked_by_consent(client, friend, item)
    assert _blocked_by_consent(client, stranger, item)
    assert client.post("/v1/generations", json=ask, headers=hf).status_code == 202
    ask_s = {**ask, "user_id": stranger}
    hs = make_key(client, "user", stranger)
    assert client.post("/v1/generations", json=ask_s, headers=hs).status_code == 403

    # A consent stored wider than the cap (as the old code allowed) still reaches friends only.
    with eng.store.write() as cur:
        cur.execute("UPDATE cameo_consents SET audience = 'everyone' WHERE user_id = ?", [teen])
    eng.generation.consents.invalidate()
    assert _blocked_by_consent(client, stranger, item)
    assert client.get(url, headers=hp).json()["effective_audience"] == "friends"

    # A new choice by the teen needs a new approval; the parent can always revoke.
    assert (
        client.put(url, json={"audience": "friends"}, headers=ht).json()["effective_audience"]
        == "none"
    )
    assert client.post(approve, headers=hp).status_code == 200
    assert client.delete(url, headers=hp).status_code == 200
    assert _blocked_by_consent(client, friend, item)
    assert client.post(approve, headers=hp).status_code == 409  # nothing waiting


@pytest.fixture()
def gen_client(
    world_dir: Path, tiny_video_model: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """The real app over the tiny world, with the tiny text-to-video pipeline."""
    from fastapi.testclient import TestClient

    from api.http.main import create_app
    from api.http.settings import ApiSettings
    from pipelines.serving.engine import open_engine

    monkeypatch.setenv("STEERFEED_GEN_MODEL", str(tiny_video_model))
    for k, v in TINY_GEN_ENV.items():
        monkeypatch.setenv(k, v)
    app = create_app(
        engine_factory=lambda: open_engine(world_dir), api_settings=ApiSettings(scheduler=False)
    )
    with TestClient(app) as c:
        yield c


def _media_url_on_feed(client: Any, viewer: int, item: int) -> str | None:
    h = make_key(client, "user", viewer)
    cursor = None
    for _ in range(6):
        params: dict[str, Any] = {"user_id": viewer, "limit": 50}
        if cursor:
            params["cursor"] = cursor
        body = client.get("/v1/feed", params=params, headers=h).json()
        for it in body["items"]:
            if it["item_id"] == item:
                url: str | None = it["explanation"].get("media_url")
                return url
        cursor = body["next_cursor"]
        if not cursor:
            break
    return None


def test_media_of_a_clip_showing_someone_follows_their_consent(gen_client: Any) -> None:
    client = gen_client
    eng = client.app.state.engine
    person, friend, stranger = _cast(eng, teen=False)
    hp, hf = make_key(client, "user", person), make_key(client, "user", friend)
    consent = f"/v1/users/{person}/cameo-consent"
    assert client.put(consent, json={"audience": "friends"}, headers=hp).status_code == 200
    r = client.post(
        "/v1/generations",
        json={"user_id": friend, "prompt": "two friends flying a kite", "cameos": [person]},
        headers=hf,
    )
    assert r.status_code == 202, r.text
    report = run_job("generate", JobContext(eng, {"wait": True, "timeout_s": 300}))
    assert report.ok, report.message
    item = client.get(r.json()["status_url"], headers=hf).json()["item_id"]

    # Public route, no link: refused for every file of the clip.
    for ext in ("mp4", "png", "json"):
        assert client.get(f"/media/clips/{item}.{ext}").status_code == 403
    # The friend's page gives a signed link that works; the stranger's page never shows it.
    url = _media_url_on_feed(client, friend, item)
    assert url is not None and "?t=" in url
    assert client.get(url).status_code == 200
    assert _blocked_by_consent(client, stranger, item)
    manifest = client.get(url.replace(".mp4", ".json"))
    assert manifest.status_code == 200
    assert "requested_by" not in manifest.text and "cameo_user_ids" not in manifest.text
    assert not [k for k in _keys(manifest.json()) if is_user_column(k)]
    # on disk too: the manifest file names no user
    files = eng.generation.files(item)
    assert "requested_by" not in files.manifest.read_text()
    assert "cameo_user_ids" not in files.manifest.read_text()

    # Narrowing the consent voids links already given.
    assert client.put(consent, json={"audience": "none"}, headers=hp).status_code == 200
    assert client.get(url).status_code == 403
    # Once public, no link is needed.
    assert client.put(consent, json={"audience": "everyone"}, headers=hp).status_code == 200
    assert client.get(f"/media/clips/{item}.mp4").status_code == 200
    assert client.get(f"/media/clips/{item}.json").status_code == 200


def test_the_demo_shows_consented_cameos_only(client: Any) -> None:
    eng = client.app.state.engine
    st = eng.state
    consents = eng.generation.consents
    audiences = consents.audiences()
    assert audiences, "the demo world recorded no cameo consent"
    served = cameo_served = 0
    for uid in sorted(st.profiles.users)[:30]:
        page = eng.feed(uid, limit=50)
        friends = st.graph.friends(uid)
        for it in page.items:
            served += 1
            people = st.catalogue.cameos[st.catalogue.row_of[it.item_id]]
            if people:
                cameo_served += 1
                assert may_see(uid, people, audiences, friends.copy), (uid, people)
    assert served > 0 and cameo_served > 0, (served, cameo_served)
