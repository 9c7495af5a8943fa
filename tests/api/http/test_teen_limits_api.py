"""A teen's own earlier choice, made looser than a limit a parent set later, does not block the
teen from tightening another setting; the check names only what the request changes.

Before: a teen whose parent set 30 minutes (own setting 45) could not tighten another setting:
403 naming ``daily_limit_min 30 -> 45``, a field the request never sent.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import make_key

PARENT_ID = 9_000_002


def _teen(client: Any) -> int:
    st = client.app.state.engine.state
    return int(min(u for u, p in st.profiles.by_user.items() if bool(p.get("is_teen"))))


def test_teen_tightens_another_setting_under_a_stricter_parent_limit(client: Any) -> None:
    teen = _teen(client)
    teen_h = make_key(client, "user", teen)
    parent = make_key(client, "parent", PARENT_ID)
    admin = make_key(client, "admin")
    own = f"/v1/users/{teen}/governor"
    r = client.patch(own, json={"daily_limit_min": 45}, headers=teen_h)  # under the default 60
    assert r.status_code == 200, r.text
    link = {"parent_id": PARENT_ID, "child_id": teen}
    assert client.post("/v1/parental/links", json=link, headers=admin).status_code == 201
    r = client.patch(
        f"/v1/parental/children/{teen}/controls", json={"daily_limit_min": 30}, headers=parent
    )
    assert r.status_code == 200, r.text
    assert r.json()["settings"]["daily_limit_min"] == 30  # the parent's stricter limit binds

    r = client.patch(own, json={"session_limit_min": 20}, headers=teen_h)
    assert r.status_code == 200, r.text
    settings = r.json()["settings"]
    assert settings["session_limit_min"] == 20
    assert settings["daily_limit_min"] == 30  # the stored 45 does not loosen the parent's 30

    # Loosening what the request sends is still refused, and the message names that field only.
    r = client.patch(own, json={"session_limit_min": 20, "daily_limit_min": 50}, headers=teen_h)
    assert r.status_code == 403
    detail = r.json()["detail"]
    assert "daily_limit_min 30 -> 50" in detail and "session_limit_min" not in detail
    # Up to the parent's limit is allowed (a teen can always return to what the parent allows).
    r = client.patch(own, json={"daily_limit_min": 30}, headers=teen_h)
    assert r.status_code == 200
    # The same through the parental view of the teen.
    r = client.get(f"/v1/parental/children/{teen}", headers=parent)
    assert r.json()["settings"]["session_limit_min"] == 20


def test_teen_sending_half_a_sleep_window_is_checked_with_its_other_half(client: Any) -> None:
    teen = _teen(client)
    h = make_key(client, "user", teen)
    own = f"/v1/users/{teen}/governor"
    # Earlier bedtime, same wake-up (07:00 default): stricter.
    r = client.patch(own, json={"sleep_start": "21:00"}, headers=h)
    assert r.status_code == 200, r.text
    # Later bedtime than the 22:00 default: looser, refused.
    r = client.patch(own, json={"sleep_start": "23:30"}, headers=h)
    assert r.status_code == 403 and "sleep hours" in r.json()["detail"]
