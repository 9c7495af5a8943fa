"""The authorisation matrix: every documented operation called by seven kinds of caller.

The callers: no key, an unknown key, and keys of each role (``user``, ``parent``, ``analyst``,
``service``, ``admin``). ``user`` and ``parent`` keys always act for a user who is neither
theirs nor linked to them. :data:`ACCESS` says, per operation, which roles may call it; every
other call must be answered 401 or 403, and every allowed one must get past authorisation (no
401/403) without a server error. Bodies are valid, so a role check inside a route is reached
rather than a 422. A new route fails here until it is added to :data:`ACCESS`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wellbeing.analytics import REPORTS

PARENT_ID = 9_000_003
ROLES = ("anon", "bad_key", "user", "parent", "analyst", "service", "admin")
SVC = {"service", "admin"}
READ = {"analyst", "admin"}
ADMIN = {"admin"}
PUBLIC = set(ROLES)

#: Roles that may call each operation when a user/parent key acts for someone else's account.
ACCESS: dict[str, set[str]] = {
    "GET /healthz": PUBLIC,
    # Load balancers probe without a key; the answers name parts, never paths or settings.
    "GET /livez": PUBLIC,
    "GET /readyz": PUBLIC,
    # Prometheus scrapes with an analyst (read-only) key.
    "GET /metrics": READ,
    "GET /v1/feed": SVC,
    "POST /v1/events": SVC,
    "POST /v1/clips": SVC,
    "POST /v1/users": SVC,
    "POST /v1/follows": SVC,
    "DELETE /v1/follows": SVC,
    "POST /v1/blocks": SVC,
    "POST /v1/users/{user_id}/mood": SVC,
    "GET /v1/users/{user_id}/mood": SVC,
    "DELETE /v1/users/{user_id}/mood/{mood_id}": SVC,
    "GET /v1/users/{user_id}/controls": SVC,
    "PUT /v1/users/{user_id}/controls": SVC,
    "GET /v1/users/{user_id}/controls/rules": SVC,
    "POST /v1/users/{user_id}/controls/rules": SVC,
    "PUT /v1/users/{user_id}/controls/rules/{rule_id}": SVC,
    "DELETE /v1/users/{user_id}/controls/rules/{rule_id}": SVC,
    "GET /v1/users/{user_id}/interests": SVC,
    "POST /v1/users/{user_id}/interests/{topic}": SVC,
    "GET /v1/users/{user_id}/data-controls": SVC,
    "PUT /v1/users/{user_id}/data-controls": SVC,
    "GET /v1/users/{user_id}/why-not/{clip_id}": SVC,
    "GET /v1/users/{user_id}/governor": SVC,
    "PATCH /v1/users/{user_id}/governor": SVC,
    "POST /v1/surveys/{survey_id}/answer": SVC,
    "POST /v1/surveys/{survey_id}/dismiss": SVC,
    "POST /v1/generations": SVC,
    "GET /v1/generations": SVC | {"analyst"},
    "GET /v1/generations/{job_id}": SVC,
    "GET /v1/users/{user_id}/cameo-consent": SVC,
    # Only the person (or the service acting for them) gives consent: admin and parent keys
    # may revoke, never give or widen it.
    "PUT /v1/users/{user_id}/cameo-consent": {"service"},
    "DELETE /v1/users/{user_id}/cameo-consent": SVC,
    "POST /v1/admin/rights-optouts": ADMIN,
    "GET /v1/admin/rights-optouts": READ,
    "DELETE /v1/admin/rights-optouts/{optout_id}": ADMIN,
    # A rights holder acts through its user account (a user key for someone else's is refused).
    "POST /v1/rights-holders": SVC,
    "GET /v1/rights-holders/{holder_id}": SVC,
    "POST /v1/rights-holders/{holder_id}/names": SVC,
    "GET /v1/rights-holders/{holder_id}/notifications": SVC,
    "POST /v1/rights-holders/{holder_id}/takedowns": SVC,
    "GET /v1/admin/rights-holders": READ,
    "POST /v1/admin/rights-holders/{holder_id}/verify": ADMIN,
    "POST /v1/admin/rights-holders/{holder_id}/reject": ADMIN,
    "POST /v1/admin/protected-people": ADMIN,
    "GET /v1/admin/protected-people": READ,
    "DELETE /v1/admin/protected-people/{person_id}": ADMIN,
    "GET /v1/admin/clip-reviews": READ,
    "GET /v1/admin/clip-reviews/{item_id}": READ,
    "POST /v1/admin/clip-reviews/{item_id}/restore": ADMIN,
    "POST /v1/admin/clip-reviews/{item_id}/take-down": ADMIN,
    "GET /v1/analytics/reports": READ,
    "GET /v1/analytics/reports/{name}": READ,
    "GET /v1/analytics/satisfaction-model": READ,
    "GET /v1/dashboard/experiments": READ,
    "GET /v1/dashboard/satisfaction": READ,
    "GET /v1/dashboard/governor": READ,
    "GET /dashboard": READ | {"anon"},  # no key: the sign-in form, not the dashboard
    "POST /dashboard/login": READ | {"anon"},  # no key in the form: 422, asks for one
    "POST /v1/parental/links": ADMIN,
    "GET /v1/parental/children": {"parent"},
    "GET /v1/parental/children/{child_id}": ADMIN,
    "PATCH /v1/parental/children/{child_id}/controls": ADMIN,
    # Only a parent linked to the teen approves (the matrix's parent is not linked).
    "POST /v1/parental/children/{child_id}/cameo-consent/approval": set(),
    "DELETE /v1/users/{user_id}": ADMIN,
    "GET /v1/admin/audit-log": READ,
    "GET /v1/experiments": READ,
    "POST /v1/experiments": ADMIN,
    "GET /v1/experiments/off-policy": READ,
    "GET /v1/experiments/{name}": READ,
    "POST /v1/experiments/{name}/start": ADMIN,
    "POST /v1/experiments/{name}/stop": ADMIN,
    "GET /v1/experiments/{name}/analysis": READ,
    "GET /v1/models": READ,
    "POST /v1/models/rollback": ADMIN,
    # Keys and job runs: admin only (analysts may read other admin lists, not these).
    "POST /v1/admin/keys": ADMIN,
    "GET /v1/admin/keys": ADMIN,
    "DELETE /v1/admin/keys/{key_id}": ADMIN,
    "GET /v1/admin/jobs": ADMIN,
    "POST /v1/admin/jobs/{name}/run": ADMIN,
    "GET /v1/analytics/satisfaction-report": READ,
    "GET /media/clips/{name}": PUBLIC,
    "GET /v1/transparency": PUBLIC,
    "GET /transparency": PUBLIC,
    # A person's own page: their own user key (the matrix's user key is the caller's own).
    "GET /me": {"anon", "user"},  # no key: the sign-in form
    "POST /me/login": {"anon", "user"},  # no key in the form: 422, asks for one
    "GET /me/export": {"user"},
    "GET /v1/users/{user_id}/my-view": SVC,
    "GET /v1/users/{user_id}/my-view/export": SVC,
}


@pytest.fixture()
def matrix_client(world_dir: Path) -> Iterator[Any]:
    """The real app with per-key rate limits and failed-key throttling off (the matrix sends
    ~50 wrong keys from one address on purpose; tests/security/test_throttling.py covers it)."""
    from fastapi.testclient import TestClient

    from api.http.main import create_app
    from api.http.settings import ApiSettings
    from pipelines.serving.engine import open_engine

    settings = ApiSettings(
        scheduler=False, rate_limit_per_s=0, rate_limit_roles={}, auth_fail_per_s=0
    )
    app = create_app(engine_factory=lambda: open_engine(world_dir), api_settings=settings)
    with TestClient(app) as c:
        yield c


def _world(client: Any) -> dict[str, Any]:
    """Ids the calls name: another user's account, a linked teen, a survey card, a job, ..."""
    engine = client.app.state.engine
    store = engine.store
    profiles = engine.state.profiles.by_user
    teens = sorted(u for u, p in profiles.items() if p.get("is_teen"))
    adults = sorted(u for u, p in profiles.items() if not p.get("is_teen"))
    me, other, victim, spare = adults[0], adults[1], adults[2], adults[3]
    teen = teens[0]

    engine.wellbeing.repo.link(PARENT_ID, teen)
    gen = engine.generation
    job = gen.queue.enqueue("a calm lake", requested_by=other)
    optout = gen.optouts.register("Holder", ["Zorblax"], kind="work")[0]
    holder, _ = gen.holders.apply(
        user_id=other, name="Matrix Studio", names=["Quuxle"], kind="work", contact="", evidence=""
    )
    person = gen.people.add("Matrix Person", aliases=[], user_id=None, note="")
    survey_id = uuid.uuid4().hex
    with store.write() as cur:
        cur.execute(
            "INSERT INTO survey_prompts (survey_id, user_id, question_key, kind, stratum, "
            "shown_at, page_probability, question_probability, inclusion_probability, status) "
            "VALUES (?, ?, 'session_feel', 'in_moment', 'light', now(), 0.1, 0.5, 0.05, 'shown')",
            [survey_id, other],
        )
    admin = store.create_api_key("admin")
    r = client.post(
        "/v1/experiments",
        json={"name": "mx", "salt": "mx", "arms": [{"name": "control"}, {"name": "b"}]},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert r.status_code == 201, r.text
    keys = {
        "user": store.create_api_key("user", user_id=me),
        "parent": store.create_api_key("parent", user_id=PARENT_ID),
        "analyst": store.create_api_key("analyst"),
        "service": store.create_api_key("service"),
        "admin": admin,
    }
    spare_key = store.create_api_key("analyst")  # the one the revoke route revokes
    return {
        "me": me,
        "other": other,
        "victim": victim,
        "spare": spare,
        "item": int(engine.state.catalogue.item_ids[0]),
        "job": job.job_id,
        "optout": optout.optout_id,
        "holder": holder.holder_id,
        "person": person.person_id,
        "survey": survey_id,
        "keys": keys,
        "spare_key_id": spare_key.split("_")[1],
    }


def _call(client: Any, w: dict[str, Any], op: str, role: str, k: int) -> Any:
    """One call of ``op`` as ``role`` with a valid body (``k`` keeps created ids apart)."""
    method, template = op.split(" ", 1)
    other, item = w["other"], w["item"]
    user_id = w["victim"] if op == "DELETE /v1/users/{user_id}" else other
    path = (
        template.replace("{user_id}", str(user_id))
        .replace("{child_id}", str(other))
        .replace("{mood_id}", "nope")
        .replace("{rule_id}", "nope")
        .replace("{topic}", "cats")
        .replace("{clip_id}", str(item))
        .replace("{survey_id}", w["survey"])
        .replace("{job_id}", w["job"])
        .replace("{optout_id}", w["optout"])
        .replace("{holder_id}", w["holder"])
        .replace("{person_id}", w["person"])
        .replace("{item_id}", str(item))
        .replace("{key_id}", w["spare_key_id"])
    )
    name = "mx"
    if "analytics" in template:
        name = next(iter(REPORTS))
    elif "jobs" in template:
        name = "wellbeing_refresh"  # a job of a few milliseconds
    path = path.replace("{name}", name)
    if template == "/media/clips/{name}":
        path = "/media/clips/1.mp4"
    params: dict[str, Any] = {}
    body: Any = None
    if template == "/v1/feed":
        params = {"user_id": other}
    elif template == "/v1/users/{user_id}/interests/{topic}":
        params = {"action": "more"}
    bodies: dict[str, Any] = {
        "POST /v1/events": {
            "events": [
                {"event_id": f"mx-{k}", "user_id": other, "event_type": "like", "item_id": item}
            ]
        },
        "POST /v1/clips": {
            "clips": [{"item_id": 10**12 + k, "author_id": other, "caption": "matrix clip"}]
        },
        "POST /v1/users": {"users": [{"user_id": 10**12 + k}]},
        "POST /v1/follows": {"follower_id": other, "followee_id": w["me"]},
        "DELETE /v1/follows": {"follower_id": other, "followee_id": w["me"]},
        "POST /v1/blocks": {"user_id": other, "target_id": w["me"]},
        "POST /v1/users/{user_id}/mood": {"text": "calm nature"},
        "PUT /v1/users/{user_id}/controls": {"muted_words": ["matrix"]},
        "PUT /v1/users/{user_id}/data-controls": {"watch_time": False},
        "POST /v1/users/{user_id}/controls/rules": {"text": "never horror after 21:00"},
        "PUT /v1/users/{user_id}/controls/rules/{rule_id}": {"text": "less politics"},
        "PATCH /v1/users/{user_id}/governor": {"daily_limit_min": 50},
        "POST /v1/surveys/{survey_id}/answer": {"answer": 3},
        "POST /v1/generations": {"user_id": other, "prompt": f"a calm lake, take {k}"},
        "PUT /v1/users/{user_id}/cameo-consent": {"audience": "everyone"},
        "POST /v1/admin/rights-optouts": {"holder": "H", "names": [f"Name{k}"]},
        "POST /v1/rights-holders": {"user_id": other, "name": "Studio", "names": [f"Qx{k}"]},
        "POST /v1/rights-holders/{holder_id}/names": {"names": [f"Qy{k}"]},
        "POST /v1/rights-holders/{holder_id}/takedowns": {"item_id": item, "reason": "mine"},
        "POST /v1/admin/rights-holders/{holder_id}/verify": {"note": "ok"},
        "POST /v1/admin/rights-holders/{holder_id}/reject": {"note": "no"},
        "POST /v1/admin/protected-people": {"name": f"Person {k}"},
        "POST /v1/admin/clip-reviews/{item_id}/restore": {"note": "fine"},
        "POST /v1/admin/clip-reviews/{item_id}/take-down": {"reason": "matrix"},
        "POST /v1/parental/links": {"parent_id": PARENT_ID + 1, "child_id": w["spare"]},
        "PATCH /v1/parental/children/{child_id}/controls": {"daily_limit_min": 30},
        "POST /v1/admin/keys": {"role": "analyst"},
        "POST /v1/experiments": {
            "name": f"mx-{k}",
            "salt": "s",
            "arms": [{"name": "control"}],
        },
    }
    body = bodies.get(op)
    headers: dict[str, str] = {}
    if role == "bad_key":
        headers["Authorization"] = f"Bearer sf_000000000000_wrong{k}"
    elif role != "anon":
        headers["Authorization"] = f"Bearer {w['keys'][role]}"
    if op in ("POST /dashboard/login", "POST /me/login"):
        key = headers.pop("Authorization", "Bearer ").split(" ", 1)[1]
        return client.post(path, data={"key": key} if key else {}, follow_redirects=False)
    return client.request(method, path, params=params, json=body, headers=headers)


def test_every_route_and_role(matrix_client: Any) -> None:
    client = matrix_client
    w = _world(client)
    ops = [f"{m.upper()} {p}" for p, o in client.app.openapi()["paths"].items() for m in o]
    assert sorted(ops) == sorted(ACCESS), "add new routes to ACCESS with the roles they allow"
    # Erasing the victim comes last: nothing after it names that user.
    ops.sort(key=lambda op: op == "DELETE /v1/users/{user_id}")
    wrong: list[str] = []
    codes: dict[tuple[bool, int], int] = {}
    n = denied = 0
    for op in ops:
        for role in ROLES:
            n += 1
            r = _call(client, w, op, role, n)
            allowed = role in ACCESS[op]
            # /readyz answers 503 by design while the concept catalogue is being built.
            not_ready = op == "GET /readyz" and r.status_code == 503
            if r.status_code >= 500 and not not_ready:
                wrong.append(f"{op} as {role}: {r.status_code} {r.text[:200]}")
            elif not allowed and r.status_code not in (401, 403):
                wrong.append(f"{op} as {role}: {r.status_code}, expected 401/403")
            elif allowed and r.status_code in (401, 403):
                wrong.append(f"{op} as {role}: {r.status_code} {r.text[:200]}")
            denied += not allowed
            codes[(allowed, r.status_code)] = codes.get((allowed, r.status_code), 0) + 1
            if role in ("anon", "bad_key") and not allowed:
                assert r.status_code == 401, f"{op} as {role}: {r.status_code}"
    if os.environ.get("STEERFEED_PROBE_PRINT"):
        print(
            f"auth matrix: {len(ops)} routes x {len(ROLES)} roles = {n} requests, "
            f"{denied} unauthorised, {len(wrong)} wrong; (allowed, status): count "
            f"{dict(sorted(codes.items()))}"
        )
    assert not wrong, "\n".join(wrong)
    assert n == len(ACCESS) * len(ROLES)
