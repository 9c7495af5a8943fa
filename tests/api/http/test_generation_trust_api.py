"""Generation trust through the real app: public figures refused, rights holders applying and
verified by an admin, their notification log, per-clip takedowns (hidden everywhere, media
410, recorded), user reports hiding a clip, and the admin review queue."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelines.serving.jobs import JobContext, run_job
from tests.conftest import TINY_GEN_ENV, make_key


@pytest.fixture()
def gen_client(
    world_dir: Path, tiny_video_model: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """The real app over the tiny world, generating with the tiny pipeline."""
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


def _engine(client: Any) -> Any:
    return client.app.state.engine


def _generate(client: Any, uid: int, headers: dict[str, str], prompt: str) -> int:
    r = client.post("/v1/generations", json={"user_id": uid, "prompt": prompt}, headers=headers)
    assert r.status_code == 202, r.text
    report = run_job("generate", JobContext(_engine(client), {"wait": True, "timeout_s": 300}))
    assert report.ok, report.message
    done = client.get(r.json()["status_url"], headers=headers).json()
    assert done["status"] == "done", done
    return int(done["item_id"])


def _feed_ids(client: Any, uid: int, headers: dict[str, str]) -> set[int]:
    ids: set[int] = set()
    cursor = None
    for _ in range(4):
        params: dict[str, Any] = {"user_id": uid, "limit": 50}
        if cursor:
            params["cursor"] = cursor
        body = client.get("/v1/feed", params=params, headers=headers).json()
        ids |= {i["item_id"] for i in body["items"]}
        cursor = body["next_cursor"]
        if not cursor:
            break
    return ids


def test_a_public_figure_is_refused_with_a_clear_reason(gen_client: Any) -> None:
    uid = min(_engine(gen_client).state.profiles.users)
    user, admin = make_key(gen_client, "user", uid), make_key(gen_client, "admin")
    r = gen_client.post(
        "/v1/generations",
        json={"user_id": uid, "prompt": "el0n musk dancing on the moon"},
        headers=user,
    )
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail["reason"] == "public_figure" and "Elon Musk" in detail["message"]
    assert "consent" in detail["message"]

    ask = {"user_id": uid, "prompt": "Ada Quill reading the news"}
    assert gen_client.post("/v1/generations", json=ask, headers=user).status_code == 202
    body = {"name": "Ada Quill", "aliases": ["Quill"], "note": "news anchor"}
    assert gen_client.post("/v1/admin/protected-people", json=body, headers=user).status_code == 403
    r = gen_client.post("/v1/admin/protected-people", json=body, headers=admin)
    assert r.status_code == 201 and r.json()["source"] == "operator"
    r = gen_client.post("/v1/generations", json=ask, headers=user)
    assert r.status_code == 422 and r.json()["detail"]["reason"] == "public_figure"
    listed = gen_client.get("/v1/admin/protected-people", headers=admin).json()["people"]
    assert "Ada Quill" in [p["name"] for p in listed] and len(listed) > 10  # + starter list


def test_a_holder_applies_is_verified_and_sees_what_was_refused(gen_client: Any) -> None:
    eng = _engine(gen_client)
    users = sorted(eng.state.profiles.users)
    holder_uid, asker = users[0], users[1]
    hh, ha = make_key(gen_client, "user", holder_uid), make_key(gen_client, "user", asker)
    admin = make_key(gen_client, "admin")
    app_body = {
        "user_id": holder_uid,
        "name": "Mouse House",
        "names": ["Mickey Mouse"],
        "kind": "character",
        "evidence": "trademark 123",
    }
    assert gen_client.post("/v1/rights-holders", json=app_body, headers=ha).status_code == 403
    r = gen_client.post("/v1/rights-holders", json=app_body, headers=hh)
    assert r.status_code == 201 and r.json()["status"] == "pending"
    hid = r.json()["holder_id"]
    assert [n["status"] for n in r.json()["names"]] == ["pending"]

    ask = {"user_id": asker, "prompt": "m1ckey mouse surfing a wave"}
    assert gen_client.post("/v1/generations", json=ask, headers=ha).status_code == 202  # pending
    # Only an admin verifies; the holder's own key may not.
    assert (
        gen_client.post(f"/v1/admin/rights-holders/{hid}/verify", json={}, headers=hh).status_code
        == 403
    )
    pending = gen_client.get("/v1/admin/rights-holders?status=pending", headers=admin).json()
    assert [h["holder_id"] for h in pending["holders"]] == [hid]
    r = gen_client.post(
        f"/v1/admin/rights-holders/{hid}/verify", json={"note": "trademark checked"}, headers=admin
    )
    assert r.status_code == 200 and r.json()["holder"]["status"] == "verified"

    r = gen_client.post("/v1/generations", json=ask, headers=ha)
    assert r.status_code == 422 and r.json()["detail"]["reason"] == "rights_opt_out"
    assert "Mouse House" in r.json()["detail"]["message"]

    url = f"/v1/rights-holders/{hid}/notifications"
    assert gen_client.get(url, headers=ha).status_code == 403
    log = gen_client.get(url, params={"kind": "prompt_refused"}, headers=hh).json()
    [entry] = log["notifications"]
    assert entry["name"] == "Mickey Mouse" and entry["matched"] == "mickey mouse"
    assert "user" not in " ".join(entry)  # who asked is not in the log
    assert gen_client.get(url, params={"kind": "nope"}, headers=hh).status_code == 422


def test_a_verified_holders_takedown_hides_the_clip_everywhere(gen_client: Any) -> None:
    eng = _engine(gen_client)
    users = sorted(eng.state.profiles.users)
    holder_uid, author = users[0], users[1]
    hh, hu = make_key(gen_client, "user", holder_uid), make_key(gen_client, "user", author)
    admin = make_key(gen_client, "admin")
    item = _generate(gen_client, author, hu, "a cartoon duck in a sailor suit")
    assert item in _feed_ids(gen_client, author, hu)
    assert gen_client.get(f"/media/clips/{item}.mp4").status_code == 200

    hid = gen_client.post(
        "/v1/rights-holders",
        json={"user_id": holder_uid, "name": "Duck Works", "names": ["Sailor Duck"]},
        headers=hh,
    ).json()["holder_id"]
    take = {"item_id": item, "reason": "our character's look and outfit"}
    url = f"/v1/rights-holders/{hid}/takedowns"
    r = gen_client.post(url, json=take, headers=hh)
    assert r.status_code == 409 and "verify" in r.json()["detail"]  # not verified yet
    gen_client.post(f"/v1/admin/rights-holders/{hid}/verify", json={}, headers=admin)
    assert gen_client.post(url, json=take, headers=hu).status_code == 403  # not the holder
    missing = gen_client.post(url, json={**take, "item_id": 10**12}, headers=hh)
    assert missing.status_code == 404

    r = gen_client.post(url, json=take, headers=hh)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "taken_down" and r.json()["holder_id"] == hid
    assert item not in _feed_ids(gen_client, author, hu)
    for ext in ("mp4", "png", "json"):
        gone = gen_client.get(f"/media/clips/{item}.{ext}")
        assert gone.status_code == 410 and "Duck Works" in gone.json()["detail"]
    job = gen_client.get("/v1/generations", headers=admin).json()["jobs"][0]
    status = gen_client.get(f"/v1/generations/{job['job_id']}", headers=hu).json()
    assert status["video_url"] is None and status["withdrawn"].startswith("taken down")
    remix = {"user_id": author, "prompt": "the same at night", "remix_of": item}
    r = gen_client.post("/v1/generations", json=remix, headers=hu)
    assert r.status_code == 422 and r.json()["detail"]["reason"] == "remix_source"
    log = gen_client.get(f"/v1/rights-holders/{hid}/notifications", headers=hh).json()
    assert [n["item_id"] for n in log["notifications"] if n["kind"] == "takedown"] == [item]

    # Recorded in the review queue, where an admin may restore it.
    entry = gen_client.get(f"/v1/admin/clip-reviews/{item}", headers=admin).json()
    assert entry["source"] == "holder" and entry["decided_by"] == f"holder:{hid}"
    r = gen_client.post(
        f"/v1/admin/clip-reviews/{item}/restore", json={"note": "parody"}, headers=admin
    )
    assert r.status_code == 200 and r.json()["status"] == "restored"
    assert gen_client.get(f"/media/clips/{item}.mp4").status_code == 200
    log = gen_client.get(f"/v1/rights-holders/{hid}/notifications", headers=hh).json()
    assert log["notifications"][0]["kind"] == "takedown_reversed"


def test_reports_queue_a_clip_hide_it_after_n_and_an_admin_decides(gen_client: Any) -> None:
    eng = _engine(gen_client)
    users = sorted(eng.state.profiles.users)
    author = users[0]
    hu = make_key(gen_client, "user", author)
    admin, service = make_key(gen_client, "admin"), make_key(gen_client, "service")
    item = _generate(gen_client, author, hu, "a snowman melting in the sun")
    n_hide = eng.generation.settings.report_hide_threshold

    def report(uid: int) -> None:
        ev = {"event_id": uuid.uuid4().hex, "user_id": uid, "item_id": item, "event_type": "report"}
        r = gen_client.post("/v1/events", json={"events": [ev]}, headers=service)
        assert r.status_code == 200, r.text

    report(users[1])
    entry = gen_client.get(f"/v1/admin/clip-reviews/{item}", headers=admin).json()
    assert entry["status"] == "pending" and entry["hidden"] is False and entry["reports"] == 1
    assert gen_client.get(f"/media/clips/{item}.mp4").status_code == 200
    for uid in users[2 : n_hide + 1]:
        report(uid)
    queue = gen_client.get("/v1/admin/clip-reviews?status=held", headers=admin).json()
    assert [r["item_id"] for r in queue["reviews"]] == [item]
    assert gen_client.get(f"/media/clips/{item}.mp4").status_code == 410
    assert item not in _feed_ids(gen_client, author, hu)

    # The admin takes it down for good; its frames are remembered.
    r = gen_client.post(
        f"/v1/admin/clip-reviews/{item}/take-down", json={"reason": "harassment"}, headers=admin
    )
    assert r.status_code == 200 and r.json()["status"] == "taken_down"
    assert gen_client.get(f"/v1/admin/clip-reviews/{item}", headers=hu).status_code == 403
    assert (
        gen_client.post(
            "/v1/admin/clip-reviews/999999999/restore", json={}, headers=admin
        ).status_code
        == 404
    )
