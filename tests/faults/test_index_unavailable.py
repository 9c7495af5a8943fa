"""With the vector index unavailable the other sources still serve pages, and /healthz says
the index is down."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines.offline.bench import start_server
from pipelines.serving.engine import Engine
from pipelines.serving.settings import SteerfeedSettings
from storage.settings import StorageSettings
from storage.store import Store


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when this returns: nothing listens


def test_index_failing_at_runtime_drops_only_ann_sources(engine: Any) -> None:
    uid = sorted(engine.state.profiles.users)[0]
    assert engine.feed(uid).degraded_sources == []
    engine.index.close()  # the shard goes away under a running engine
    page = engine.feed(uid, limit=20)
    assert len(page.items) == 20
    assert "ann_user_vector" in page.degraded_sources
    assert {i.source for i in page.items}.isdisjoint(page.degraded_sources)


def test_engine_opens_and_serves_without_a_reachable_index(world_dir: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    eng = Engine(SteerfeedSettings(storage=StorageSettings(data_dir=world_dir, index_url=url)))
    try:
        assert eng.index is None
        health = eng.health()
        assert health["status"] == "degraded"
        assert health["index"].startswith("unavailable")
        page = eng.feed(sorted(eng.state.profiles.users)[0], limit=20)
        assert len(page.items) == 20
        assert all(i.source != "ann_user_vector" for i in page.items)
    finally:
        eng.close()


@pytest.mark.slow
def test_server_serves_pages_with_the_index_server_down(world_dir: Path, tmp_path: Path) -> None:
    store = Store(world_dir / "steerfeed.duckdb")
    key = store.create_api_key("service")
    uid = int(store.scalar("SELECT min(user_id) FROM users"))
    store.close()
    down = f"http://127.0.0.1:{_closed_port()}"
    proc, url = start_server(
        world_dir, extra_env={"STEERFEED_INDEX_URL": down}, log_path=tmp_path / "server.log"
    )
    try:
        health = httpx.get(url + "/healthz").json()
        assert health["status"] == "degraded" and health["index"].startswith("unavailable")
        headers = {"Authorization": f"Bearer {key}"}
        cursor = None
        for _ in range(3):
            params: dict[str, Any] = {"user_id": uid, "limit": 10}
            if cursor:
                params["cursor"] = cursor
            r = httpx.get(url + "/v1/feed", params=params, headers=headers, timeout=60)
            assert r.status_code == 200, r.text
            assert len(r.json()["items"]) == 10
            cursor = r.json()["next_cursor"]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
