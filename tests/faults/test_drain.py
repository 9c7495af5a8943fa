"""SIGTERM to ``steerfeed serve`` under load: requests in flight finish, the impressions still
queued are written, and the process ends cleanly within the drain bound.

The server runs as a real subprocess (``python -m api.cli serve``). The impression writer's
maximum wait is raised to its upper bound, 5 s, and pages are served just before each round of
slow requests, so their impressions are still queued when the signal arrives (the test checks
the queue gauge): only the drain can write them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipelines.offline.bench import _free_port
from storage.store import Store
from tests.conftest import wait_until_live

DRAIN_TIMEOUT_S = 20
BATCH = 1000  # events per request (the most one batch may hold): slow enough to catch


@dataclass
class Call:
    started: float
    ended: float | None = None
    status: int | None = None
    accepted: int = 0
    error: str | None = None


def _post_batch(url: str, key: str, users: list[int], items: list[int], call: Call) -> None:
    run = uuid.uuid4().hex[:8]
    events = [
        {
            "event_id": f"drain-{run}-{i}",
            "user_id": users[i % len(users)],
            "item_id": items[i % len(items)],
            "event_type": "view",
            "watch_frac": 0.5,
        }
        for i in range(BATCH)
    ]
    try:
        # A connection of its own (no keep-alive): what is in flight is what the server took.
        r = httpx.post(
            f"{url}/v1/events",
            json={"events": events},
            headers={"Authorization": f"Bearer {key}", "Connection": "close"},
            timeout=60.0,
        )
        call.status = r.status_code
        if r.status_code == 200:
            call.accepted = int(r.json()["accepted"])
    except httpx.HTTPError as exc:
        call.error = f"{type(exc).__name__}: {exc}"
    call.ended = time.monotonic()


def _gauges(url: str, key: str) -> dict[str, float]:
    text = httpx.get(
        f"{url}/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=30.0
    ).text
    return {
        s.name: s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name in ("steerfeed_http_requests_in_flight", "steerfeed_impression_queue_frames")
    }


@pytest.mark.slow
def test_sigterm_drains_in_flight_requests_and_flushes_impressions(
    world_dir: Path, tmp_path: Path
) -> None:
    db = world_dir / "steerfeed.duckdb"
    store = Store(db)
    service = store.create_api_key("service")
    analyst = store.create_api_key("analyst")
    users = store.query("SELECT user_id FROM users ORDER BY 1 LIMIT 30")["user_id"].to_list()
    items = store.query("SELECT item_id FROM clips ORDER BY 1 LIMIT 200")["item_id"].to_list()
    store.close()

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    env = {
        **os.environ,
        "STEERFEED_EVENT_WRITER_MAX_WAIT_S": "5",
        "STEERFEED_TELEMETRY_LOG_FORMAT": "json",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    cmd = [sys.executable, "-m", "api.cli", "serve", "--data-dir", str(world_dir)]
    cmd += ["--port", str(port), "--no-scheduler", "--drain-timeout", str(DRAIN_TIMEOUT_S)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_live(proc, url, log_path)

        pages: list[dict[str, Any]] = []
        # Rounds of concurrent slow requests until the server reports every outstanding one
        # in flight (its own gauge, minus the scrape itself); then SIGTERM.
        calls: list[Call] = []
        signalled_at: float | None = None
        queued_frames = 0.0
        for _ in range(20):
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {service}"}) as c:
                for uid in users[:5]:
                    r = c.get("/v1/feed", params={"user_id": uid, "limit": 10})
                    assert r.status_code == 200, r.text
                    pages.append(r.json())
            batch = [Call(time.monotonic()) for _ in range(8)]
            threads = [
                threading.Thread(target=_post_batch, args=(url, service, users, items, call))
                for call in batch
            ]
            for t in threads:
                t.start()
            calls += batch
            while any(c.ended is None for c in batch):
                gauges = _gauges(url, analyst)
                outstanding = sum(c.ended is None for c in batch)
                in_app = gauges["steerfeed_http_requests_in_flight"] - 1
                if outstanding and in_app >= outstanding:
                    queued_frames = gauges["steerfeed_impression_queue_frames"]
                    signalled_at = time.monotonic()
                    proc.send_signal(signal.SIGTERM)
                    break
            if signalled_at is not None:
                for t in threads:
                    t.join(timeout=120)
                break
            for t in threads:
                t.join(timeout=120)
        assert signalled_at is not None, "no request was caught in flight in 20 rounds"
        code = proc.wait(timeout=DRAIN_TIMEOUT_S + 60)
        exited_after = time.monotonic() - signalled_at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    server_log = log_path.read_text(errors="replace")
    # uvicorn re-raises the signal it caught once it has shut down cleanly, so the exit status
    # says "ended by SIGTERM"; its last line says the shutdown was complete.
    assert code in (0, -signal.SIGTERM), server_log[-3000:]
    assert exited_after <= DRAIN_TIMEOUT_S + 30, f"exit took {exited_after:.1f} s"
    in_flight = [c for c in calls if c.started < signalled_at and (c.ended or 0) > signalled_at]
    assert in_flight, "the requests caught in flight"
    broken = [c for c in in_flight if c.status != 200]
    assert not broken, f"in-flight requests cut by the shutdown: {broken}"
    assert queued_frames >= 1, "the pages' impressions were still queued at SIGTERM"

    store = Store(db)
    try:
        stored = dict(
            store.query(
                "SELECT request_id, count(*) AS n FROM events WHERE event_type = 'impression' "
                "AND request_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY 1",
                [[p["request_id"] for p in pages]],
            ).iter_rows()
        )
        acked = sum(c.accepted for c in calls)
        n_drain_events = store.scalar("SELECT count(*) FROM events WHERE event_id LIKE 'drain-%'")
    finally:
        store.close()
    for p in pages:
        assert stored.get(p["request_id"], 0) == len(p["items"]), p["request_id"]
    assert n_drain_events >= acked > 0  # every acknowledged event is stored
    lines = [json.loads(x) for x in server_log.splitlines() if x.startswith("{")]
    messages = [x["message"] for x in lines]
    assert "Application shutdown complete." in messages
    assert not [x for x in lines if x["level"] in ("ERROR", "CRITICAL")], server_log[-3000:]
    print(
        f"\ndrain: {len(in_flight)} requests in flight at SIGTERM, all answered 200; "
        f"{len(pages)} pages' impressions flushed ({sum(stored.values())} rows); "
        f"exit {code} after {exited_after:.1f} s"
    )
