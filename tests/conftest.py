"""Shared fixtures: a tiny real world on a real DuckDB file and a real Qdrant Edge shard."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def copy_world(src: Path, dst: Path) -> Path:
    """Copy a data folder to ``dst`` keeping its sparse files sparse.

    Qdrant Edge pre-sizes its WAL and mmap files (~170 MB apparent for the tiny world, ~4 MB
    written); ``shutil.copytree`` would write every hole out and a suite of copies then fills
    the disk. Only the data extents are copied here (``SEEK_DATA``/``SEEK_HOLE``).
    """
    for root, _dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            _copy_sparse(Path(root) / name, dst / rel / name)
    return dst


def _copy_sparse(src: Path, dst: Path) -> None:
    size = src.stat().st_size
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        fd = fin.fileno()
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # no data after pos: the rest is a hole
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            fin.seek(start)
            fout.seek(start)
            remaining = end - start
            while remaining:
                chunk = fin.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                fout.write(chunk)
                remaining -= len(chunk)
            pos = end
        fout.truncate(size)


@pytest.fixture(scope="session")
def tiny_world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo world of 150 users, 800 clips and ~15k events, built and indexed once."""
    from pipelines.offline.demo import build_demo

    d = tmp_path_factory.mktemp("world")
    build_demo(d, n_users=150, n_clips=800, n_events=15_000, seed=3)
    return d


#: Generator settings for the tiny pipeline (8 frames of 32x32, 2 steps, no retry back-off).
TINY_GEN_ENV = {
    "STEERFEED_GEN_NUM_FRAMES": "8",
    "STEERFEED_GEN_HEIGHT": "32",
    "STEERFEED_GEN_WIDTH": "32",
    "STEERFEED_GEN_STEPS": "2",
    "STEERFEED_GEN_TORCH_THREADS": "1",
    "STEERFEED_GEN_RETRY_BACKOFF_S": "0",
}


@pytest.fixture(scope="session")
def tiny_video_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny text-to-video diffusers pipeline saved with ``save_pretrained`` (built once)."""
    from pipelines.generation.tiny_model import build_tiny_text_to_video

    return build_tiny_text_to_video(tmp_path_factory.mktemp("t2v"))


@pytest.fixture()
def world_dir(tiny_world_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny world (tests may write to it)."""
    return copy_world(tiny_world_dir, tmp_path / "world")


@pytest.fixture()
def engine(world_dir: Path) -> Iterator[object]:
    """An engine open on a private copy of the tiny world."""
    from pipelines.serving.engine import open_engine

    eng = open_engine(world_dir)
    yield eng
    eng.close()


@pytest.fixture()
def client(world_dir: Path) -> Iterator[object]:
    """A TestClient on the real app over a private copy of the tiny world."""
    from fastapi.testclient import TestClient

    from api.http.main import create_app
    from api.http.settings import ApiSettings
    from pipelines.serving.engine import open_engine

    app = create_app(
        engine_factory=lambda: open_engine(world_dir), api_settings=ApiSettings(scheduler=False)
    )
    with TestClient(app) as c:
        yield c


def make_key(client: object, role: str, user_id: int | None = None) -> dict[str, str]:
    """Create an API key through the running app's store; return the auth header."""
    engine = client.app.state.engine  # type: ignore[attr-defined]
    key = engine.store.create_api_key(role, user_id=user_id)
    return {"Authorization": f"Bearer {key}"}


def wait_until_live(
    proc: subprocess.Popen[bytes], url: str, log: Path, *, timeout_s: float = 180
) -> None:
    """Wait for a ``steerfeed serve`` subprocess to answer ``/livez``; fail with the end of its
    log if it exits or does not come up in time."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the server did not come up"
        try:
            if httpx.get(f"{url}/livez", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
