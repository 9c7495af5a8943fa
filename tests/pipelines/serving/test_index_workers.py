"""Two engines in two processes over one PostgreSQL store and one data folder (as
``steerfeed serve --workers 2`` runs them): both serve ANN searches, and what one adds or
erases reaches the other's copy of the vector index at its next sync."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.offline.demo import build_demo
from pipelines.serving.engine import CAPTION_SPACE, open_engine
from pipelines.serving.erasure import erase_user
from storage.index.edge import EdgeVectorIndex

ADMIN_URL = os.environ.get(
    "STEERFEED_TEST_POSTGRES_URL",
    f"postgresql://{os.environ.get('PGUSER', 'postgres')}@127.0.0.1:5432/postgres",
)
ROOT = Path(__file__).resolve().parents[3]

# The second worker: opens its engine, answers an ANN search, then reports for each clip id it
# is sent when that clip is in (or, for "gone", out of) its index.
WORKER = """
import json, sys, time
import numpy as np
from pipelines.serving.engine import open_engine
eng = open_engine(sys.argv[1])
eng.index_reconciler.wait(120)
index = eng.index
vec = eng.store.get_vectors("caption", np.array([int(sys.argv[2])]))[1][0]
hits = index.search("caption", vec, limit=5)
print(json.dumps({"copy": index.copy_of is not None, "hits": [h[0] for h in hits]}), flush=True)
for line in sys.stdin:
    want, pid = line.split()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        present = bool(index.get_vectors("caption", np.array([int(pid)])))
        if present == (want == "present"):
            break
        time.sleep(0.1)
    print(json.dumps({"pid": int(pid), "present": present}), flush=True)
eng.close()
"""


@pytest.fixture()
def pg_url() -> Iterator[str]:
    try:
        import psycopg

        with psycopg.connect(ADMIN_URL, connect_timeout=3, autocommit=True) as admin:
            dbname = f"steerfeed_test_{uuid.uuid4().hex[:12]}"
            admin.execute(f"CREATE DATABASE {dbname}".encode())
    except Exception as exc:
        pytest.skip(f"no PostgreSQL server at {ADMIN_URL} ({type(exc).__name__}: {exc})")
    yield ADMIN_URL.rsplit("/", 1)[0] + "/" + dbname
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)".encode())


@pytest.mark.slow
def test_two_workers_serve_and_follow_each_others_clips(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STEERFEED_DB_URL", pg_url)
    monkeypatch.setenv("STEERFEED_INDEX_SYNC_S", "0.5")
    monkeypatch.setenv("STEERFEED_WELLBEING_WARM_ON_START", "false")
    build_demo(tmp_path, n_users=40, n_clips=200, n_events=2000, seed=5)
    first = open_engine(tmp_path)
    assert first.index_reconciler.wait(120)
    assert isinstance(first.index, EdgeVectorIndex) and first.index.copy_of is None
    assert first.index_sync_s == 0.5  # PostgreSQL: other workers write the store
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    probe = int(first.store.scalar("SELECT min(item_id) FROM clips"))
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(tmp_path), str(probe)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert worker.stdin is not None and worker.stdout is not None
    try:
        hello = json.loads(worker.stdout.readline())
        got = first.store.get_vectors(CAPTION_SPACE, np.array([probe]))
        assert got is not None
        mine = [pid for pid, _ in first.index.search(CAPTION_SPACE, got[1][0], limit=5)]
        assert probe in mine
        assert hello == {"copy": True, "hits": mine}  # the second worker answers from a copy

        author = int(first.store.scalar("SELECT min(user_id) FROM users"))
        new_id = int(first.store.scalar("SELECT max(item_id) FROM clips")) + 1
        first.add_clips(
            pl.DataFrame({"item_id": [new_id], "author_id": [author], "caption": ["a new clip"]})
        )
        assert first.index.get_vectors(CAPTION_SPACE, np.array([new_id]))
        worker.stdin.write(f"present {new_id}\n")
        worker.stdin.flush()
        assert json.loads(worker.stdout.readline()) == {"pid": new_id, "present": True}

        erase_user(first, author)  # their clips leave the store and this worker's index
        worker.stdin.write(f"gone {new_id}\n")
        worker.stdin.flush()
        assert json.loads(worker.stdout.readline()) == {"pid": new_id, "present": False}
    finally:
        worker.stdin.close()
        worker.wait(timeout=60)
        first.close()
    assert worker.returncode == 0
    assert not list((tmp_path / "vectors").glob("clips.worker-*"))
