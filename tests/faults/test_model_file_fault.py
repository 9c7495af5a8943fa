"""A corrupt or missing model file: the real server keeps serving pages with the hand-weighted
scorer and says so in /healthz (the learned ranker's own fallback, seen from outside)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from pipelines.offline.bench import start_server
from storage.store import Store
from tests.conftest import copy_world


@pytest.fixture(scope="module")
def trained_world(tiny_world_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny world after the train job promoted a model."""
    from pipelines.serving.engine import open_engine
    from pipelines.serving.jobs import JobContext, run_job
    from ranking.learned.training import TrainSettings

    d = tmp_path_factory.mktemp("faults-trained") / "world"
    copy_world(tiny_world_dir, d)
    eng = open_engine(d)
    try:
        opts = {"settings": TrainSettings(num_rounds=40, min_data_in_leaf=20)}
        rep = run_job("train", JobContext(eng, opts))
    finally:
        eng.close()
    assert rep.ok and rep.counts["promoted"], rep.message or rep.counts
    return d


def _break(world: Path, how: str) -> str:
    from ranking.learned.registry import ModelRegistry

    version = ModelRegistry(world / "models").serving_version()
    assert version is not None
    files = sorted(p for p in (world / "models" / version).iterdir() if p.suffix != ".json")
    assert files, "the model has files to break"
    if how == "corrupt":
        files[0].write_bytes(b"\x00garbage, not a LightGBM model\xff" * 10)
    else:
        files[0].unlink()
    return version


@pytest.mark.slow
@pytest.mark.parametrize("how", ["corrupt", "missing"])
def test_server_serves_hand_weighted_and_reports_it(
    trained_world: Path, tmp_path: Path, how: str
) -> None:
    world = tmp_path / "world"
    copy_world(trained_world, world)
    version = _break(world, how)
    store = Store(world / "steerfeed.duckdb")
    key = store.create_api_key("service")
    uid = int(store.scalar("SELECT min(user_id) FROM users"))
    store.close()
    proc, url = start_server(world, log_path=tmp_path / "server.log")
    try:
        headers = {"Authorization": f"Bearer {key}"}
        for _ in range(3):
            r = httpx.get(url + "/v1/feed", params={"user_id": uid}, headers=headers, timeout=60)
            assert r.status_code == 200, r.text
            assert r.json()["items"]
        health = httpx.get(url + "/healthz", timeout=30).json()
        assert health["status"] == "degraded"
        learned = health["learned_ranker"]
        assert learned["degraded"] is True
        assert learned["serving"] == "hand_weighted"
        assert version in str(learned)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
