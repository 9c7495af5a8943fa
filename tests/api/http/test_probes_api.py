"""``/livez`` and ``/readyz``: public probes; readiness names what is not ready or degraded."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from steering.concepts import ConceptIndex


def test_livez_answers_without_a_key(client: Any) -> None:
    r = client.get("/livez")
    assert r.status_code == 200 and r.json() == {"status": "alive"}


@pytest.fixture()
def cold_client(world_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The app before its concept catalogue is built: the start-up warm-up is held back, so
    the catalogue is ``building`` until the test builds it."""
    from fastapi.testclient import TestClient

    from api.http.main import create_app
    from api.http.settings import ApiSettings
    from pipelines.serving.engine import open_engine

    monkeypatch.setattr(ConceptIndex, "warm_async", lambda self: None)
    app = create_app(
        engine_factory=lambda: open_engine(world_dir), api_settings=ApiSettings(scheduler=False)
    )
    with TestClient(app) as c:
        yield c


def test_readyz_is_503_until_the_concept_catalogue_is_built(cold_client: Any) -> None:
    r = cold_client.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["ready"] is False and body["not_ready"] == ["concepts"]
    assert body["parts"]["concepts"] == "building"
    assert body["parts"]["store"] == "ok" and body["parts"]["index"] == "ok"
    assert cold_client.get("/livez").status_code == 200  # alive all along
    cold_client.app.state.engine.steering.concepts.catalogue()  # the build the server starts
    r = cold_client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {
        "ready": True,
        "parts": {
            "store": "ok",
            "index": "ok",
            "model": "ok: hand_weighted",
            "concepts": "ready",
        },
        "not_ready": [],
        "degraded": [],
    }


@pytest.fixture()
def no_index_client(world_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from api.http.main import create_app
    from api.http.settings import ApiSettings
    from pipelines.serving.engine import open_engine

    vectors = world_dir / "vectors"
    shutil.rmtree(vectors)
    vectors.write_text("not a shard")  # the index cannot open
    app = create_app(
        engine_factory=lambda: open_engine(world_dir), api_settings=ApiSettings(scheduler=False)
    )
    with TestClient(app) as c:
        yield c


def test_readyz_stays_ready_and_names_a_lost_index(no_index_client: Any, world_dir: Path) -> None:
    no_index_client.app.state.engine.steering.concepts.catalogue()
    r = no_index_client.get("/readyz")
    assert r.status_code == 200, r.text  # the feed serves without the ANN sources
    body = r.json()
    assert body["degraded"] == ["index"]
    assert body["parts"]["index"].startswith("unavailable: IndexUnavailableError")
    assert str(world_dir) not in r.text  # public: no filesystem paths
    analyst = no_index_client.app.state.engine.store.create_api_key("analyst")
    text = no_index_client.get("/metrics", headers={"Authorization": f"Bearer {analyst}"}).text
    assert 'steerfeed_degraded{part="index"} 1.0' in text
    assert 'steerfeed_ready{part="store"} 1.0' in text
