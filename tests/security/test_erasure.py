"""DELETE /v1/users/{id} (two steps) leaves no trace of the user in any table, the index,
memory, media, logs or the bytes of any file, and no page in flight writes after it."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import struct
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.http.routes.users import confirmation_token
from pipelines.serving.jobs import JobContext, run_job
from ranking.pipeline import FeedQuery
from storage.erasure import find_mentions, is_user_column, pseudonym
from tests.conftest import TINY_GEN_ENV, make_key
from wellbeing.surveys import SamplingPolicy

# An id no clip, event position or count uses, so a hit anywhere is the user.
UID = 987_654_321
CLIP_BY_USER = 900_000_001
CLIP_WITH_CAMEO = 900_000_002
# Every personal string the user leaves contains this word, so one grep finds them all.
MARK = "quokka"
NEEDLES: dict[str, bytes] = {
    "mark": MARK.encode(),
    "id as text": str(UID).encode(),
    "id as int64": struct.pack("<q", UID),
    "id as big-endian int32": struct.pack(">i", UID),  # CBOR, as in Qdrant's write-ahead log
}


def erase(client: Any, user_id: int, headers: dict[str, str]) -> Any:
    """Both steps of an erasure: ask, then confirm with the token."""
    first = client.delete(f"/v1/users/{user_id}", headers=headers)
    assert first.status_code == 202, first.text
    token = first.json()["confirm_token"]
    return client.delete(f"/v1/users/{user_id}", params={"confirm": token}, headers=headers)


def byte_hits(root: Path, needles: dict[str, bytes] = NEEDLES) -> dict[str, int]:
    """``"file: needle" -> count`` for every file under ``root`` holding a needle."""
    hits: dict[str, int] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for name, needle in needles.items():
            n = data.count(needle)
            if n:
                hits[f"{path.relative_to(root)}: {name}"] = n
    return hits


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


def _always_survey(engine: Any) -> None:
    surveys = engine.wellbeing.surveys
    surveys.policy = SamplingPolicy(rate_per_week=20.0, min_spacing_hours=0.0)
    surveys.pages_per_week_override = 1.0  # a per-page rate of 1: every page asks


def _populate(client: Any, *, generate: bool = False) -> dict[str, str]:
    """Give the user every kind of data the API accepts, plus a row in a table made later."""
    eng = client.app.state.engine
    admin = make_key(client, "admin")
    service = make_key(client, "service")
    other, friend = sorted(eng.state.profiles.users)[:2]
    ok = client.post("/v1/users", json={"users": [{"user_id": UID}]}, headers=admin)
    assert ok.status_code == 201, ok.text
    me = make_key(client, "user", UID)
    clips = [
        {"item_id": CLIP_BY_USER, "author_id": UID, "caption": f"my own {MARK} sunset timelapse"},
        {
            "item_id": CLIP_WITH_CAMEO,
            "author_id": other,
            "caption": f"beach day with friends and a {MARK}",
            "cameo_user_ids": [UID],
        },
    ]
    assert client.post("/v1/clips", json={"clips": clips}, headers=service).status_code == 201
    for a, b in ((UID, other), (friend, UID)):
        r = client.post("/v1/follows", json={"follower_id": a, "followee_id": b}, headers=admin)
        assert r.status_code == 201, r.text
    r = client.post("/v1/blocks", json={"user_id": UID, "target_id": friend}, headers=me)
    assert r.status_code == 201, r.text
    item = int(eng.state.catalogue.item_ids[0])
    now = datetime.now(UTC).isoformat()
    events = [
        {"event_id": f"e-{MARK}-view", "user_id": UID, "event_type": "view", "item_id": item,
         "watch_frac": 0.9, "ts": now},
        {"event_id": f"e-{MARK}-like", "user_id": UID, "event_type": "like", "item_id": item},
        {"event_id": "e-fol", "user_id": friend, "event_type": "follow", "target_user_id": UID},
        {"event_id": "e-cam", "user_id": friend, "event_type": "like", "item_id": CLIP_BY_USER},
    ]  # fmt: skip
    r = client.post("/v1/events", json={"events": events}, headers=service)
    assert r.status_code == 200, r.text
    assert client.get("/v1/feed", params={"user_id": UID}, headers=me).status_code == 200
    r = client.post(
        f"/v1/users/{UID}/mood", json={"text": f"calm nature, {MARK}s, no news"}, headers=me
    )
    assert r.status_code == 201, r.text
    r = client.put(
        f"/v1/users/{UID}/controls", json={"muted_words": [f"zanzibar{MARK}"]}, headers=me
    )
    assert r.status_code == 200, r.text
    r = client.patch(f"/v1/users/{UID}/governor", json={"daily_limit_min": 37}, headers=admin)
    assert r.status_code == 200, r.text  # also an admin action naming the user in the audit log
    r = client.put(f"/v1/users/{UID}/cameo-consent", json={"audience": "everyone"}, headers=me)
    assert r.status_code == 200, r.text
    r = client.post(
        "/v1/parental/links", json={"parent_id": UID, "child_id": friend}, headers=admin
    )
    assert r.status_code == 201, r.text
    if generate:
        r = client.post(
            "/v1/generations",
            json={"user_id": UID, "prompt": f"paper boats drifting past a {MARK}"},
            headers=me,
        )
        assert r.status_code == 202, r.text
        report = run_job("generate", JobContext(eng, {"wait": True, "timeout_s": 300}))
        assert report.ok, report.message
        done = client.get(r.json()["status_url"], headers=me).json()
        assert done["status"] == "done", done
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
                  "later_feature.teen_id", "audit_log.target",
                  "cameo_consents.user_id"):  # fmt: skip
        assert where in before, f"set-up did not reach {where}: {before}"
    assert eng.index is not None
    assert len(eng.index.get_vectors("caption", np.array([CLIP_BY_USER, CLIP_WITH_CAMEO]))) == 2

    r = erase(client, UID, me)
    assert r.status_code == 200, r.text
    alias = pseudonym(UID, eng.pseudonym_key)
    assert r.json()["erased"] == alias
    assert r.json()["deleted_clips"] == 2
    assert r.json()["bytes_purged"] == {"index_vacuumed": True, "store_file_rewritten": True}

    assert find_mentions(eng.store, UID) == {}
    assert eng.store.scalar("SELECT count(*) FROM later_feature") == 1
    assert eng.index.get_vectors("caption", np.array([CLIP_BY_USER, CLIP_WITH_CAMEO])) == {}
    st = eng.state
    assert UID not in st.profiles.users
    assert (
        UID not in st.graph.following
        and UID not in st.graph.followers
        and UID not in st.activity.history
    )
    assert all(UID not in s for s in st.graph.following.values())
    assert all(UID not in s for s in st.engagement.engagers.values())
    assert CLIP_BY_USER not in st.catalogue.row_of and CLIP_WITH_CAMEO not in st.catalogue.row_of
    assert all(UID not in c for c in st.catalogue.cameos)
    # the user's key died with the user; an admin sees the erasure under a pseudonym
    assert client.get("/v1/feed", params={"user_id": UID}, headers=me).status_code == 401
    log = client.get("/v1/admin/audit-log", headers=make_key(client, "admin")).json()["entries"]
    assert any(e["action"] == "user.erase" and e["target"] == alias for e in log)


def test_erasure_takes_a_request_then_a_confirmation_with_a_token(client: Any) -> None:
    eng = client.app.state.engine
    me = _populate(client)
    admin = make_key(client, "admin")
    eng.writer.flush()  # the populating pages' impressions are in the store before counting
    before = find_mentions(eng.store, UID)

    first = client.delete(f"/v1/users/{UID}", headers=me)
    assert first.status_code == 202, first.text
    body = first.json()
    assert body["status"] == "confirmation_required" and body["erases"]
    assert "confirm" in body["confirm_with"]
    assert find_mentions(eng.store, UID) == before  # asking erased nothing
    assert client.get("/v1/feed", params={"user_id": UID}, headers=me).status_code == 200

    url = f"/v1/users/{UID}"
    for bad in ("nonsense", "1.abc", body["confirm_token"][:-1] + "0"):
        r = client.delete(url, params={"confirm": bad}, headers=me)
        assert r.status_code == 400 and "ask for a new one" in r.json()["detail"], r.text
    # a token is for the key that asked: an admin's key cannot use the user's token
    r = client.delete(url, params={"confirm": body["confirm_token"]}, headers=admin)
    assert r.status_code == 400
    key_id = eng.store.query("SELECT key_id FROM api_keys WHERE user_id = ?", [UID]).item(0, 0)
    expired = confirmation_token(eng, UID, key_id, int(time.time()) - 1)
    assert client.delete(url, params={"confirm": expired}, headers=me).status_code == 400
    assert UID in eng.state.profiles.users

    r = client.delete(url, params={"confirm": body["confirm_token"]}, headers=me)
    assert r.status_code == 200 and r.json()["status"] == "erased", r.text
    assert find_mentions(eng.store, UID) == {}


class _Gate:
    """A query hydrator that holds the user's pages until released (to erase mid-page)."""

    name = "test_gate"

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        self.entered = threading.Event()
        self.release = threading.Event()

    def hydrate(self, query: FeedQuery) -> None:
        if query.user_id == self.user_id:
            self.entered.set()
            assert self.release.wait(30)


def test_a_page_in_flight_during_the_erasure_writes_nothing_after_it(client: Any) -> None:
    eng = client.app.state.engine
    me = _populate(client)
    admin = make_key(client, "admin")
    _always_survey(eng)  # so the page writes a survey prompt as well as impressions
    gate = _Gate(UID)
    home = eng.products["home"]
    eng.products["home"] = dataclasses.replace(home, query_hydrators=[gate, *home.query_hydrators])
    token = client.delete(f"/v1/users/{UID}", headers=admin).json()["confirm_token"]
    pages: list[Any] = []
    erased: list[Any] = []
    page = threading.Thread(
        target=lambda: pages.append(
            client.get("/v1/feed", params={"user_id": UID, "limit": 20}, headers=me)
        )
    )
    page.start()
    assert gate.entered.wait(30)
    eraser = threading.Thread(
        target=lambda: erased.append(
            client.delete(f"/v1/users/{UID}", params={"confirm": token}, headers=admin)
        )
    )
    eraser.start()
    time.sleep(1.0)  # the erasure waits for the page (before the fix it finished meanwhile)
    gate.release.set()
    page.join(60)
    eraser.join(60)
    assert pages[0].status_code == 200 and len(pages[0].json()["items"]) > 0
    assert erased[0].status_code == 200, erased[0].text
    time.sleep(0.5)  # side effects of the page, had they outlived the erasure
    eng.writer.flush()
    assert eng.store.scalar("SELECT count(*) FROM events WHERE user_id = ?", [UID]) == 0
    assert eng.store.scalar("SELECT count(*) FROM survey_prompts WHERE user_id = ?", [UID]) == 0
    assert find_mentions(eng.store, UID) == {}
    assert UID not in eng.state.activity.seen and UID not in eng.state.activity.history
    # and a page asked for afterwards is refused, whatever key asks
    r = client.get("/v1/feed", params={"user_id": UID}, headers=make_key(client, "service"))
    assert r.status_code == 404


def test_the_erased_users_bytes_are_gone_from_every_file_and_the_logs(
    gen_client: Any, world_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = gen_client
    eng = client.app.state.engine
    me = _populate(client, generate=True)
    media = eng.generation.media_dir
    eng.store.checkpoint()  # the user's rows in the file itself, not only in its WAL
    before = byte_hits(world_dir)
    db = eng.store.path.name
    assert any(k.startswith(f"{db}: mark") for k in before), before
    assert any(k.startswith(f"{db}: id as text") for k in before), before  # settings, audit
    assert any(k.startswith("vectors/") for k in before), before  # payload author_id
    assert any(k.startswith("media/") and "mark" in k for k in before), before
    generated = [p.name for p in (media / "clips").iterdir()]
    assert generated, "the generation made no files"

    r = erase(client, UID, me)
    assert r.status_code == 200, r.text
    assert r.json()["media_files_deleted"] >= 3

    assert byte_hits(world_dir) == {}
    for name in generated:
        assert client.get(f"/media/clips/{name}").status_code == 404
    # logs: the server's own records (the test client's request lines are not server logs)
    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    text = "\n".join(r.getMessage() + (f" {r.exc_text}" if r.exc_text else "") for r in server)
    assert MARK not in text and str(UID) not in text
    assert "37" not in " ".join(m for m in text.splitlines() if "governor" in m)


def test_logs_carry_no_personal_settings(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    eng = client.app.state.engine
    uid = next(
        u for u in sorted(eng.state.profiles.users) if not eng.state.profiles.by_user[u]["is_teen"]
    )
    me = make_key(client, "user", uid)
    r = client.put(
        f"/v1/users/{uid}/controls", json={"muted_words": [f"zanzibar{MARK}"]}, headers=me
    )
    assert r.status_code == 200, r.text
    # An odd limit, so that a match in a log line is the limit, not a timing or an id.
    r = client.patch(f"/v1/users/{uid}/governor", json={"daily_limit_min": 173}, headers=me)
    assert r.status_code == 200, r.text
    r = client.put(f"/v1/users/{uid}/cameo-consent", json={"audience": "everyone"}, headers=me)
    assert r.status_code == 200, r.text
    r = client.post(f"/v1/users/{uid}/mood", json={"text": f"only {MARK} videos"}, headers=me)
    assert r.status_code == 201, r.text
    assert client.get("/v1/feed", params={"user_id": uid}, headers=me).status_code == 200
    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert server, "nothing was logged at all"
    for rec in server:
        msg = rec.getMessage()
        assert MARK not in msg, msg
        assert "everyone" not in msg and not re.search(r"(?<![\w.])173(?![\w.])", msg), msg
        assert f"user={uid}" not in msg and f"user {uid}" not in msg, msg


def test_pseudonyms_are_keyed_and_the_key_is_not_in_the_store(engine: Any) -> None:
    key = engine.pseudonym_key
    alias = pseudonym(UID, key)
    assert alias == engine.pseudonym(UID) == pseudonym(UID, key)  # stable: entries stay linked
    assert pseudonym(UID, b"another key of 32 bytes........") != alias
    # The old form (an unkeyed hash of the id) is found by trying ids; the keyed one is not.
    unkeyed = "erased:" + hashlib.sha256(f"steerfeed-user:{UID}".encode()).hexdigest()[:16]
    assert alias != unkeyed and alias[len("erased:") :] not in unkeyed
    engine.store.checkpoint()
    data = engine.store.path.read_bytes()
    assert key not in data and key.hex().encode() not in data


def test_erased_clips_never_reach_a_page(client: Any) -> None:
    eng = client.app.state.engine
    _populate(client)
    assert erase(client, UID, make_key(client, "admin")).status_code == 200
    for uid in sorted(eng.state.profiles.users)[:5]:
        page = eng.feed(uid, limit=50)
        assert not {CLIP_BY_USER, CLIP_WITH_CAMEO} & {i.item_id for i in page.items}


def test_remixes_of_an_erased_users_clips_go_with_them(client: Any) -> None:
    eng = client.app.state.engine
    me = _populate(client)
    other = sorted(eng.state.profiles.users)[2]
    remix = {"item_id": 900_000_003, "author_id": other, "caption": f"remixing: my own {MARK}",
             "remix_of": CLIP_BY_USER}  # fmt: skip
    service = make_key(client, "service")
    assert client.post("/v1/clips", json={"clips": [remix]}, headers=service).status_code == 201
    r = erase(client, UID, me)
    assert r.status_code == 200 and r.json()["deleted_clips"] == 3, r.text
    assert eng.store.scalar("SELECT count(*) FROM clips WHERE item_id = 900000003") == 0


def test_only_the_user_or_an_admin_may_erase(client: Any) -> None:
    a, b = sorted(client.app.state.engine.state.profiles.users)[:2]
    for headers in (make_key(client, "user", a), make_key(client, "service"),
                    make_key(client, "analyst")):  # fmt: skip
        assert client.delete(f"/v1/users/{b}", headers=headers).status_code == 403
    r = client.delete("/v1/users/123456789012", headers=make_key(client, "admin"))
    assert r.status_code == 404


def test_user_columns_are_recognised_by_name() -> None:
    for name in ("user_id", "follower_id", "target_user_id", "cameo_user_ids", "teen_id",
                 "parent_id", "author_id", "actor_user_id", "approved_by_user_id"):  # fmt: skip
        assert is_user_column(name), name
    for name in ("item_id", "position", "remix_of", "users_count", "event_id"):
        assert not is_user_column(name), name
