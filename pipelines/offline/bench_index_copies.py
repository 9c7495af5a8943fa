"""Memory and time of the vector index for several workers on one machine (Qdrant Edge).

``python -m pipelines.offline.bench_index_copies --clips 20000`` builds a DuckDB store of
``--clips`` clips with a 384-d caption vector (cosine) and a 64-d collab vector (dot), builds the
Qdrant Edge shard from the store as an engine does (the reconciler's repair, then optimize),
then measures, each in its own process so that RSS is that process's alone:

- the *owner* (the first worker, which keeps the shard): RSS after opening it and answering
  ``--queries`` ANN queries on each space, over the RSS of the same imports without an index;
- a *copy* (any further worker): the same, plus the time to make the copy (``open_index`` with
  the shard held) and the copy's size on disk (allocated blocks, and the apparent size of its
  pre-sized, mostly empty files).

Then, with the owner still running, this process opens one more copy and times its syncs with
the store (see docs/deploying.md, "Vectors for several workers"): nothing changed (the
fingerprint only), ``--changed`` clips added, the same clips erased, and the collab space
re-fitted (``--no-refit`` skips it: at 200k clips it rebuilds the whole HNSW). Prints one JSON
object with the load average before and after. ``--workdir`` keeps the store and the shard and
reuses them on the next run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipelines.serving.engine import clip_payloads
from pipelines.serving.index_reconciler import IndexReconciler
from ranking.retrieval.user_vectors import put_user_vectors
from storage.factory import open_store
from storage.index.base import VectorIndex, VectorSpec
from storage.index.factory import open_index
from storage.store import Store

SPACES = {"caption": VectorSpec(384, "cosine"), "collab": VectorSpec(64, "dot")}
logger = logging.getLogger(__name__)

TOPICS = ["cats", "cooking", "music", "sport", "travel", "games", "art", "science"]

# One worker: imports, RSS, open the index (owner or copy), queries, RSS again.
MEASURE = """
import json, os, sys, time
from pathlib import Path
import numpy as np
from storage.index.factory import open_index
def rss_kb():
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0])
    return out
def disk_bytes(folder):
    files = [p.stat() for p in folder.rglob("*") if p.is_file()]
    return {"disk_mb": sum(s.st_blocks * 512 for s in files),
            "apparent_mb": sum(s.st_size for s in files)}
url, queries, hold = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "hold"
rng = np.random.default_rng(1)
caption_q = rng.standard_normal((queries, 384)).astype(np.float32)
collab_q = rng.standard_normal((queries, 64)).astype(np.float32)
before = rss_kb()
t0 = time.perf_counter()
index = open_index(url, copy_when_held=True, copy_wait_s=600)
opened_s = time.perf_counter() - t0
t0 = time.perf_counter()
for q in caption_q:
    index.search("caption", q, limit=200)
for q in collab_q:
    index.search("collab", q, limit=200)
query_ms = (time.perf_counter() - t0) * 1000 / (2 * queries)
after = rss_kb()
out = {"role": "copy" if index.copy_of is not None else "owner", "open_s": round(opened_s, 2),
       "query_ms": round(query_ms, 2), "rss_base_mb": round(before["VmRSS"] / 1024),
       "rss_mb": round(after["VmRSS"] / 1024),
       "rss_delta_mb": round((after["VmRSS"] - before["VmRSS"]) / 1024),
       "rss_anon_delta_mb": round((after["RssAnon"] - before["RssAnon"]) / 1024),
       "rss_file_delta_mb": round((after["RssFile"] - before["RssFile"]) / 1024),
       "points": index.count()}
out.update({k: round(v / 2**20, 1) for k, v in disk_bytes(index.path).items()})
print(json.dumps(out), flush=True)
if hold:
    sys.stdin.read()
index.close()
"""


def _loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" (")[0].strip()


def _clips(ids: np.ndarray, rng: np.random.Generator) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_id": ids,
            "author_id": rng.integers(1, 2000, len(ids)),
            "caption": ["a clip"] * len(ids),
            "topics": [[TOPICS[t]] for t in rng.integers(0, len(TOPICS), len(ids))],
            "maturity": rng.integers(0, 3, len(ids)).astype(np.int32),
        }
    )


def _add(store: Store, ids: np.ndarray, rng: np.random.Generator) -> None:
    store.add_clips(_clips(ids, rng))
    for space, spec in SPACES.items():
        store.put_vectors(space, ids, rng.standard_normal((len(ids), spec.size)).astype(np.float32))


def _reconciler(store: Store, index: VectorIndex, *, sync: bool) -> IndexReconciler:
    return IndexReconciler(
        store,
        index,
        dict(SPACES),
        payloads=clip_payloads,
        ensure=lambda ix: ix.ensure(
            {"caption": SPACES["caption"]},
            keyword_fields=("safety_label", "topics", "hashtags"),
            integer_fields=("maturity", "author_id"),
        ),
        sync_every_s=5.0 if sync else None,
    )


def _timed(fn: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - t0, 2)


def _worker(url: str, queries: int, mode: str) -> subprocess.Popen[str]:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.Popen(  # noqa: S603 (our own interpreter and script)
        [sys.executable, "-c", MEASURE, url, str(queries), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=root,
    )


def run(
    clips: int, *, queries: int, changed: int, workdir: Path, refit: bool = True
) -> dict[str, Any]:
    """Build the store and the shard (or reuse those ``workdir`` holds), then measure the
    owner, a copy and the syncs; each figure is also logged as soon as it is measured."""
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"clips": clips, "load_before": _loadavg()}
    reuse = (workdir / "bench.duckdb").exists() and (workdir / "vectors" / "clips").exists()
    store = open_store(f"duckdb://{(workdir / 'bench.duckdb').as_posix()}")
    ids = np.arange(1, clips + 1, dtype=np.int64)
    url = f"qdrant-edge://{(workdir / 'vectors').as_posix()}"
    if reuse:
        out["reused"] = str(workdir)
    else:
        for s in range(0, clips, 50_000):
            _add(store, ids[s : s + 50_000], rng)
        put_user_vectors(
            store, "collab", np.array([1]), np.zeros((1, 64), np.float32), model_version="v1"
        )
        owner = open_index(url)
        rec = _reconciler(store, owner, sync=False)
        rec.ensure(owner)
        _, out["build_from_store_s"] = _timed(lambda: rec.run(reason="bench"))
        owner.close()
        logger.info("built from the store in %.1f s", out["build_from_store_s"])

    held = _worker(url, queries, "hold")
    assert held.stdout is not None
    out["owner"] = json.loads(held.stdout.readline())
    logger.info("owner %s", out["owner"])
    copy = _worker(url, queries, "close")
    got, _ = copy.communicate()
    out["copy"] = json.loads(got)
    logger.info("copy %s", out["copy"])

    # One more copy in this process, with the store: the syncs a worker runs.
    mine = open_index(url, copy_when_held=True, copy_wait_s=600)
    sync = _reconciler(store, mine, sync=True)
    sync.run(reason="start")
    timings: dict[str, float] = {}
    _, timings["unchanged_s"] = _timed(sync.sync)
    new = np.arange(clips + 1, clips + changed + 1, dtype=np.int64)
    _add(store, new, rng)
    _, timings["added_s"] = _timed(sync.sync)
    logger.info("sync %s", timings)
    with store.write() as cur:
        cur.execute(f"DELETE FROM clip_vectors WHERE item_id > {clips}")  # noqa: S608
        cur.execute(f"DELETE FROM clips WHERE item_id > {clips}")  # noqa: S608
    _, timings["erased_s"] = _timed(sync.sync)
    logger.info("sync %s", timings)
    if refit:
        store.put_vectors("collab", ids, rng.standard_normal((clips, 64)).astype(np.float32))
        version = f"v{time.time_ns()}"
        put_user_vectors(
            store, "collab", np.array([1]), np.zeros((1, 64), np.float32), model_version=version
        )
        _, timings["refit_s"] = _timed(sync.sync)
    out["sync"] = {"changed": changed, **timings}
    mine.close()
    assert held.stdin is not None
    held.stdin.close()
    held.wait()
    store.close()
    out["load_after"] = _loadavg()
    return out


def main(argv: list[str] | None = None) -> int:
    """Measure and print the figures as JSON."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clips", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--changed", type=int, default=100)
    ap.add_argument("--no-refit", action="store_true", help="skip the collab re-fit sync")
    ap.add_argument(
        "--workdir", type=Path, help="keep the store and shard here (reused when present)"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("storage").setLevel(logging.WARNING)
    logging.getLogger("pipelines").setLevel(logging.WARNING)
    kw = {"queries": args.queries, "changed": args.changed, "refit": not args.no_refit}
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        result = run(args.clips, workdir=args.workdir, **kw)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_index_copies_") as tmp:
            result = run(args.clips, workdir=Path(tmp), **kw)
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
