"""kill -9 the server while a client streams event batches: every acknowledged event is
there after a restart (an acknowledgement is sent only after the commit), on DuckDB and on
PostgreSQL (``served_world``, tests/faults/conftest.py)."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines.offline.bench import start_server
from pipelines.offline.bench_workers import start_workers, stop_workers, worker_pids
from tests.faults.served_world import ServedWorld
from tests.postgres_server import postgres_unreachable

_PG_SKIP = postgres_unreachable()


def _stream(
    url: str,
    key: str,
    users: list[int],
    items: list[int],
    acked: list[str],
    attempted: list[str],
    stop: threading.Event,
    failed: list[str] | None = None,
) -> None:
    """Post batches of 25 new events until ``stop``; with ``failed``, a failed request is
    noted there and the stream goes on on a new connection, each request on its own (so the
    batches go to every worker, whichever accepts), else it ends the stream."""
    headers = {"Authorization": f"Bearer {key}"}
    n = 0
    limits = (
        httpx.Limits(max_keepalive_connections=0)
        if failed is not None
        else httpx.Limits(max_connections=100, max_keepalive_connections=20)  # httpx's default
    )
    with httpx.Client(base_url=url, headers=headers, timeout=10.0, limits=limits) as c:
        while not stop.is_set():
            batch: list[dict[str, Any]] = [
                {
                    "event_id": f"k9-{uuid.uuid4().hex}",
                    "user_id": users[(n + i) % len(users)],
                    "item_id": items[(n * 7 + i) % len(items)],
                    "event_type": "like",
                }
                for i in range(25)
            ]
            n += 1
            attempted.extend(e["event_id"] for e in batch)
            try:
                r = c.post("/v1/events", json={"events": batch})
            except httpx.HTTPError as exc:
                # the server (or the worker) died mid-request: never acknowledged
                if failed is None:
                    return
                failed.append(type(exc).__name__)
                time.sleep(0.05)
                continue
            if r.status_code == 200:
                acked.extend(e["event_id"] for e in batch)


@pytest.mark.slow
def test_acknowledged_events_survive_kill_9(served_world: ServedWorld, tmp_path: Path) -> None:
    world_dir, env = served_world.data_dir, served_world.server_env
    store = served_world.open_store()
    key = store.create_api_key("service")
    users = store.query("SELECT user_id FROM users ORDER BY 1 LIMIT 50")["user_id"].to_list()
    items = store.query("SELECT item_id FROM clips ORDER BY 1 LIMIT 200")["item_id"].to_list()
    before = store.count("events")
    store.close()

    proc, url = start_server(world_dir, log_path=tmp_path / "server1.log", extra_env=env)
    acked: list[str] = []
    attempted: list[str] = []
    stop = threading.Event()
    t = threading.Thread(target=_stream, args=(url, key, users, items, acked, attempted, stop))
    t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 500 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no shutdown hook, no flush, no checkpoint
    proc.wait()
    stop.set()
    t.join(timeout=30)
    assert len(acked) >= 500, "the client never got going"

    proc, url = start_server(world_dir, log_path=tmp_path / "server2.log", extra_env=env)
    try:
        r = httpx.post(
            url + "/v1/events",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "events": [
                    {
                        "event_id": "after-restart",
                        "user_id": users[0],
                        "item_id": items[0],
                        "event_type": "view",
                        "watch_frac": 0.5,
                    }
                ]
            },
        )
        assert r.status_code == 200 and r.json()["accepted"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=60)

    store = served_world.open_store(read_only=True)
    try:
        have = set(
            store.query(
                "SELECT event_id FROM events WHERE event_id IN (SELECT unnest(?::VARCHAR[]))",
                [acked],
            )["event_id"].to_list()
        )
        total = store.count("events")
    finally:
        store.close()
    missing = sorted(set(acked) - have)
    print(
        f"\nevents: {len(attempted)} sent, {len(acked)} acknowledged before kill -9, "
        f"{len(set(acked) & have)} of them stored, {total - before - 1} new rows in all"
    )
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:3]}"
    # nothing appeared from nowhere either: every new event was attempted (or the probe)
    assert before + len(acked) + 1 <= total <= before + len(attempted) + 1


def _stored(served_world: ServedWorld, ids: list[str]) -> tuple[set[str], int]:
    store = served_world.open_store(read_only=True)
    try:
        have = set(
            store.query(
                "SELECT event_id FROM events WHERE event_id IN (SELECT unnest(?::VARCHAR[]))",
                [ids],
            )["event_id"].to_list()
        )
        return have, store.count("events")
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.skipif(_PG_SKIP is not None, reason=str(_PG_SKIP))
@pytest.mark.parametrize("served_world", ["postgres"], indirect=True)
def test_acknowledged_events_survive_kill_9_of_one_of_two_workers(
    served_world: ServedWorld, tmp_path: Path
) -> None:
    """``steerfeed serve --workers 2`` over PostgreSQL: kill -9 one worker while events
    stream in; every event either worker acknowledged, before or after, is stored."""
    store = served_world.open_store()
    key = store.create_api_key("service")
    users = store.query("SELECT user_id FROM users ORDER BY 1 LIMIT 50")["user_id"].to_list()
    items = store.query("SELECT item_id FROM clips ORDER BY 1 LIMIT 200")["item_id"].to_list()
    before = store.count("events")
    store.close()
    (tmp_path / "metrics").mkdir()
    env = {**served_world.server_env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    proc, url = start_workers(
        served_world.data_dir, 2, log_path=tmp_path / "serve.log", extra_env=env
    )
    acked: list[str] = []
    attempted: list[str] = []
    failed: list[str] = []
    stop = threading.Event()
    t = threading.Thread(
        target=_stream, args=(url, key, users, items, acked, attempted, stop, failed)
    )
    try:
        victims = worker_pids(proc.pid, 2)
        assert len(victims) == 2, victims
        t.start()
        deadline = time.monotonic() + 60
        while len(acked) < 500 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(acked) >= 500, "the client never got going"
        os.kill(victims[0], signal.SIGKILL)  # one worker: no shutdown hook, no flush
        at_kill = len(acked)
        deadline = time.monotonic() + 60
        while len(acked) < at_kill + 250 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(acked) >= at_kill + 250, "no worker acknowledged anything after the kill"
    finally:
        stop.set()
        t.join(timeout=30)
        stop_workers(proc)
    have, total = _stored(served_world, acked)
    missing = sorted(set(acked) - have)
    print(
        f"\nevents: {len(attempted)} sent, {at_kill} acknowledged before kill -9 of worker "
        f"{victims[0]}, {len(acked)} in all, {len(set(acked) & have)} of them stored; "
        f"{len(failed)} requests failed ({sorted(set(failed))})"
    )
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:3]}"
    assert before + len(acked) <= total <= before + len(attempted)
