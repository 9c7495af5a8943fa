"""Two ``steerfeed serve`` processes on one PostgreSQL store, as two machines would run them.

Each server has its own data folder (its own vector index, no shared files) and listens on its
own port; they share only the database and the secrets (``STEERFEED_SECRET_KEY``,
``STEERFEED_PSEUDONYM_KEY``), as two machines behind a load balancer would. A user's pages
alternate between them and never repeat a clip; views sent half to each add up to the same
minutes on both; a key revoked through one is refused by the other. Skipped with the reason when
no PostgreSQL server answers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines.offline.bench import _free_port
from storage.factory import open_store
from tests.conftest import copy_world, wait_until_live
from tests.pipelines.serving.conftest import PSEUDONYM, SECRET

#: How long the other server may take to apply what one wrote (the follower polls every 50 ms;
#: the bound is generous for a loaded 2-core test machine).
CATCH_UP_S = 15.0


def _eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + CATCH_UP_S
    while not check():
        assert time.monotonic() < deadline, f"the other server did not catch up: {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def servers(
    pg_world: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[str], dict[str, str]]]:
    """Two servers (URLs) and the keys made for the test: ``service``, ``admin``, ``spare``."""
    url, src = pg_world
    store = open_store(url)
    try:
        keys = {
            "service": store.create_api_key("service"),
            "admin": store.create_api_key("admin"),
            "spare": store.create_api_key("service"),
        }
    finally:
        store.close()
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    root = tmp_path_factory.mktemp("two_servers")
    try:
        for name in ("a", "b"):
            data = copy_world(src, root / name)
            port = _free_port()
            env = {
                **os.environ,
                "STEERFEED_DB_URL": url,
                "STEERFEED_SECRET_KEY": SECRET,
                "STEERFEED_PSEUDONYM_KEY": PSEUDONYM,
                "STEERFEED_FOLLOW_INTERVAL_S": "0.05",
                "HF_HUB_OFFLINE": "1",
            }
            log = root / f"{name}.log"
            procs.append(
                subprocess.Popen(
                    [
                        *(sys.executable, "-m", "api.cli", "serve"),
                        *("--data-dir", str(data), "--port", str(port), "--no-scheduler"),
                    ],
                    env=env,
                    stdout=log.open("wb"),
                    stderr=subprocess.STDOUT,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        for n, proc in enumerate(procs):
            wait_until_live(proc, urls[n], root / f"{'ab'[n]}.log")
        yield urls, keys
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _get(url: str, path: str, key: str, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{url}{path}", params=params, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def test_pages_alternating_between_two_servers_never_repeat(
    servers: tuple[list[str], dict[str, str]],
) -> None:
    urls, keys = servers
    uid = 4
    seen: list[int] = []
    cursor = None
    for n in range(6):
        params: dict[str, Any] = {"user_id": uid, "limit": 10}
        if cursor:
            params["cursor"] = cursor
        r = _get(urls[n % 2], "/v1/feed", keys["service"], **params)
        assert r.status_code == 200, r.text
        body = r.json()
        seen += [i["item_id"] for i in body["items"]]
        cursor = body["next_cursor"]
    assert len(seen) == 60
    assert len(set(seen)) == len(seen), "a clip was served twice"


def test_governor_minutes_add_up_across_two_servers(
    servers: tuple[list[str], dict[str, str]],
) -> None:
    urls, keys = servers
    uid = 6

    def minutes(url: str) -> float:
        r = _get(url, f"/v1/users/{uid}/governor", keys["service"])
        assert r.status_code == 200, r.text
        return float(r.json()["governor"]["minutes_used"])

    start = minutes(urls[0])
    _eventually(lambda: minutes(urls[1]) == start, "the starting minutes")
    page = _get(urls[0], "/v1/feed", keys["service"], user_id=uid, limit=8).json()
    items = [i["item_id"] for i in page["items"]]
    now = datetime.now(UTC).replace(tzinfo=None)
    # Eight views of 45 s each, half sent to each server.
    for n, item in enumerate(items):
        event = {
            "event_id": f"two-{uuid.uuid4().hex}",
            "user_id": uid,
            "item_id": item,
            "event_type": "view",
            "watch_s": 45.0,
            "watch_frac": 1.0,
            "ts": (now.replace(microsecond=0)).isoformat(),
        }
        r = httpx.post(
            f"{urls[n % 2]}/v1/events",
            json={"events": [event]},
            headers={"Authorization": f"Bearer {keys['service']}"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
    expected = start + 8 * 45 / 60
    _eventually(lambda: abs(minutes(urls[0]) - expected) < 0.05, "minutes on the first server")
    _eventually(lambda: abs(minutes(urls[1]) - expected) < 0.05, "minutes on the second server")


def test_a_key_revoked_through_one_server_is_refused_by_the_other(
    servers: tuple[list[str], dict[str, str]],
) -> None:
    urls, keys = servers
    spare = keys["spare"]
    # The second server has the key in its cache.
    assert _get(urls[1], "/v1/feed", spare, user_id=3, limit=1).status_code == 200
    key_id = spare.split("_")[1]  # sf_<key id>_<secret>
    r = httpx.delete(
        f"{urls[0]}/v1/admin/keys/{key_id}",
        headers={"Authorization": f"Bearer {keys['admin']}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    _eventually(
        lambda: _get(urls[1], "/v1/feed", spare, user_id=3, limit=1).status_code == 401,
        "the revoked key refused",
    )
