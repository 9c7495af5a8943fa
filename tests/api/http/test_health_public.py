"""``/healthz`` is public: its error strings say what is degraded without filesystem paths.

Before: an index that failed to open showed ``cannot create Qdrant Edge shard at
/srv/.../vectors/clips`` and the generation model's folder to anyone.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture()
def broken_index_client(
    world_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from api.http.main import create_app
    from api.http.settings import ApiSettings
    from pipelines.serving.engine import open_engine

    vectors = world_dir / "vectors"
    shutil.rmtree(vectors)
    vectors.write_text("not a shard")  # the index cannot open: its error names the path
    monkeypatch.setenv("STEERFEED_GEN_MODEL", str(tmp_path / "models" / "t2v"))
    app = create_app(
        engine_factory=lambda: open_engine(world_dir), api_settings=ApiSettings(scheduler=False)
    )
    with TestClient(app) as c:
        yield c


def test_healthz_error_strings_carry_no_filesystem_paths(
    broken_index_client: Any, world_dir: Path, tmp_path: Path
) -> None:
    engine = broken_index_client.app.state.engine
    assert str(world_dir) in (engine.index_error or "")  # the server side keeps the detail
    r = broken_index_client.get("/healthz")  # no key
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "degraded"
    assert body["index"].startswith("unavailable: IndexUnavailableError")
    assert "<path>" in body["index"]
    assert str(tmp_path) not in r.text
    assert "/vectors/" not in r.text and "/models/" not in r.text


def test_scrub_keeps_what_is_not_a_path() -> None:
    from api.http.scrub import scrub_paths

    health = {
        "index": "unavailable: ConnectError: http://127.0.0.1:6333 refused",
        "learned_ranker": {"error": "No such file: '/srv/data/models/v3/model.txt'"},
        "checks": ["C:\\data\\steerfeed\\x.duckdb locked", "ok"],
        "clips": 800,
        "time": 1.5,
    }
    clean = scrub_paths(health)
    assert clean["index"] == health["index"]
    assert clean["learned_ranker"]["error"] == "No such file: '<path>'"
    assert clean["checks"] == ["<path> locked", "ok"]
    assert clean["clips"] == 800 and clean["time"] == 1.5
