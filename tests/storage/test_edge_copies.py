"""Several processes on one Qdrant Edge shard: the first keeps it, the others serve from copies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from storage.index.base import VectorSpec
from storage.index.edge import EdgeVectorIndex
from storage.index.edge_copies import remove_stale_copies
from storage.index.factory import open_index

ROOT = Path(__file__).resolve().parents[2]

# A second worker: opens the held shard as a copy, answers one query, then either closes
# (its copy goes) or waits to be killed (its copy stays behind, stale).
CHILD = """
import json, sys
import numpy as np
from storage.index.factory import open_index
index = open_index(sys.argv[1], copy_when_held=True, copy_wait_s=10)
hits = index.search("caption", np.asarray(json.loads(sys.argv[2]), dtype=np.float32), limit=3)
print(json.dumps({"copy": index.path.name, "copied": index.copied, "count": index.count(),
                  "hits": [h[0] for h in hits]}), flush=True)
if sys.argv[3] == "close":
    index.close()
else:
    sys.stdin.read()  # held until killed
"""


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32)


def _owner(folder: Path, n: int) -> EdgeVectorIndex:
    index = open_index(f"qdrant-edge://{folder.as_posix()}")
    assert isinstance(index, EdgeVectorIndex)
    index.ensure({"caption": VectorSpec(8, "cosine")}, integer_fields=("author_id",))
    ids = np.arange(1, n + 1, dtype=np.int64)
    index.upsert(ids, {"caption": _vectors(n)}, [{"author_id": int(i)} for i in ids])
    return index


def _child(url: str, query: np.ndarray, mode: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", CHILD, url, json.dumps(query.tolist()), mode]
    return subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )


def test_a_second_process_serves_the_held_shard_from_its_own_copy(tmp_path: Path) -> None:
    url = f"qdrant-edge://{tmp_path.as_posix()}"
    owner = _owner(tmp_path, 40)
    query = _vectors(1, seed=7)[0]
    expected = [pid for pid, _ in owner.search("caption", query, limit=3)]

    child = _child(url, query, "close")
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0
    got = json.loads(out)
    assert got["copied"] is True and got["count"] == 40
    assert got["hits"] == expected  # the copy answers as the shard does
    assert got["copy"].startswith("clips.worker-")
    assert not list(tmp_path.glob("clips.worker-*"))  # closed: the copy and its locks are gone

    # The owner keeps writing and flushing (a second raw open of its folder would break this).
    owner.upsert(np.array([41]), {"caption": _vectors(1, seed=9)}, [{"author_id": 41}])
    assert owner.count() == 41
    owner.close()


def test_copies_of_dead_workers_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    url = f"qdrant-edge://{tmp_path.as_posix()}"
    owner = _owner(tmp_path, 10)
    child = _child(url, _vectors(1)[0], "hold")
    assert child.stdout is not None
    dead = json.loads(child.stdout.readline())["copy"]
    assert (tmp_path / dead).is_dir()
    assert remove_stale_copies(tmp_path / "clips") == []  # its worker is alive: kept
    child.send_signal(signal.SIGKILL)  # no close: the copy stays behind
    child.wait(timeout=30)
    assert (tmp_path / dead).is_dir()

    live = open_index(url, copy_when_held=True)  # the next opener removes the dead copy
    assert isinstance(live, EdgeVectorIndex) and live.copy_of == tmp_path / "clips"
    assert not (tmp_path / dead).exists()
    assert not list(tmp_path.glob(f"{dead}*"))  # nor its lock files
    assert remove_stale_copies(tmp_path / "clips") == []  # the live copy is held: kept
    assert live.count() == 10
    live.close()
    owner.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clips", "clips.copylock", "clips.lock"]


def test_a_copy_of_a_shard_not_made_yet_starts_empty(tmp_path: Path) -> None:
    # The owner holds the folder but has not created the shard: the copy is filled from the
    # store by its reconciler instead.
    holder = EdgeVectorIndex(tmp_path / "clips")
    copy = open_index(f"qdrant-edge://{tmp_path.as_posix()}", copy_when_held=True)
    assert isinstance(copy, EdgeVectorIndex) and not copy.copied
    copy.ensure({"caption": VectorSpec(8, "cosine")})
    assert copy.count() == 0
    copy.close()
    holder.close()
