"""kill -9 the server under continuous paging: the impressions of every page served more than
the writer's maximum wait before the kill are stored (a crash loses at most that window), on
DuckDB and on PostgreSQL (``served_world``, tests/faults/conftest.py).

Before the writer had a maximum wait, 15 s of steady paging stored nothing: its flush interval
was an idle timeout, and under steady traffic the queue is never idle.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines.offline.bench import start_server
from tests.faults.served_world import ServedWorld

PAGING_S = 15.0
MAX_WAIT_S = 0.2  # the writer's default (STEERFEED_EVENT_WRITER_MAX_WAIT_S)
# What the test allows between "served" and "committed": the maximum wait, one write, and the
# scheduling slack of a shared 2-core machine. The docs state ~1 s; the measured window is
# printed (run with -s).
ALLOWED_LOSS_S = 2.0


@dataclass
class Served:
    request_id: str
    items: int
    at: float  # monotonic time the response arrived


def _page(
    url: str, key: str, users: list[int], served: list[Served], stop: threading.Event
) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    n = 0
    cursor: str | None = None
    with httpx.Client(base_url=url, headers=headers, timeout=30.0) as c:
        while not stop.is_set():
            uid = users[(n // 5) % len(users)]  # five pages per session, then the next user
            params: dict[str, Any] = {"user_id": uid, "limit": 20}
            if cursor and n % 5:
                params["cursor"] = cursor
            try:
                r = c.get("/v1/feed", params=params)
            except httpx.HTTPError:
                return  # the server died mid-request
            if r.status_code == 200:
                body = r.json()
                served.append(Served(body["request_id"], len(body["items"]), time.monotonic()))
                cursor = body["next_cursor"]
            n += 1


@pytest.mark.slow
def test_impressions_of_continuous_paging_survive_kill_9(
    served_world: ServedWorld, tmp_path: Path
) -> None:
    world_dir = served_world.data_dir
    store = served_world.open_store()
    key = store.create_api_key("service")
    users = store.query("SELECT user_id FROM users ORDER BY 1 LIMIT 40")["user_id"].to_list()
    store.close()

    proc, url = start_server(
        world_dir, log_path=tmp_path / "server.log", extra_env=served_world.server_env
    )
    served: list[Served] = []
    stop = threading.Event()
    clients = [
        threading.Thread(target=_page, args=(url, key, users[i::2], served, stop)) for i in range(2)
    ]
    try:
        for t in clients:
            t.start()
        time.sleep(PAGING_S)
        killed_at = time.monotonic()
        proc.kill()  # SIGKILL while pages keep coming: no shutdown hook, no flush
        proc.wait()
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for t in clients:
            t.join(timeout=60)

    pages = [s for s in served if s.at <= killed_at]
    assert len(pages) >= 20, f"only {len(pages)} pages served in {PAGING_S} s"
    store = served_world.open_store()  # on DuckDB: replays the write-ahead log, as a restart would
    try:
        stored_per_request = dict(
            store.query(
                "SELECT request_id, count(*) AS n FROM events WHERE event_type = 'impression' "
                "AND request_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY 1",
                [[p.request_id for p in pages]],
            ).iter_rows()
        )
    finally:
        store.close()
    n_served = sum(p.items for p in pages)
    n_stored = sum(stored_per_request.values())
    lost = [p for p in pages if stored_per_request.get(p.request_id, 0) < p.items]
    window = killed_at - min(p.at for p in lost) if lost else 0.0
    print(
        f"\nimpressions: served {n_served} in {len(pages)} pages over {PAGING_S:.0f} s, "
        f"stored {n_stored}, lost {n_served - n_stored} "
        f"(pages answered in the last {window:.2f} s before kill -9)"
    )
    assert n_stored > 0
    assert all(stored_per_request.get(p.request_id, 0) <= p.items for p in pages)
    assert window <= ALLOWED_LOSS_S, (
        f"impressions of pages answered {window:.2f} s before kill -9 were lost "
        f"(writer's maximum wait {MAX_WAIT_S} s)"
    )
