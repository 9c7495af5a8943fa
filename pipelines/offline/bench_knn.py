"""Compare the concept catalogue's kNN graph (:func:`steering.knn.ivf_knn`) with faiss-cpu and
pynndescent on caption vectors: build time and recall@k against exact search.

Not part of the engine: faiss-cpu and pynndescent are not dependencies (``pip install
faiss-cpu pynndescent`` to run them; a library that is not installed is reported and skipped).
Vectors come from ``--vectors FILE.npy`` or are embedded first with ``--embed``:

- ``microlens``: the MicroLens titles in ``../shared/data/microlens`` (real captions, ~20k);
- ``demo:N``: the captions of a demo world with ``N`` clips (few distinct captions: rows repeat);
- ``microlens_x10``: ten noisy copies of every MicroLens vector (~200k distinct rows).

Recall is measured on ``--sample`` rows against exact search and counts ties: a returned
neighbour counts when its similarity reaches the exact ``k``-th one (rows repeat in the demo
world). Example::

    python -m pipelines.offline.bench_knn --embed microlens --save /tmp/ml.npy
    python -m pipelines.offline.bench_knn --vectors /tmp/ml.npy --threads 1 --repeat 2 \\
        --variants "ivf:n_probe=4;faiss_ivf:nprobe=4;pynndescent"

Each result is one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from steering.knn import exact_knn, ivf_knn

MICROLENS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "microlens"


def embed(source: str, microlens: Path = MICROLENS) -> np.ndarray:
    """Caption vectors for ``microlens``, ``microlens_x10`` or ``demo:N`` (see the module doc)."""
    import polars as pl

    from features.embedding import TextEmbedder

    emb = TextEmbedder()
    if source.startswith("demo:"):
        from pipelines.offline.demo_world import WorldConfig, build_world

        n = int(source.split(":", 1)[1])
        world = build_world(WorldConfig(n_users=20_000, n_clips=n, n_events=0, seed=0))
        caps = world.clips["caption"]
        uniq = caps.unique(maintain_order=True)
        pos = {c: i for i, c in enumerate(uniq.to_list())}
        return emb.embed(uniq.to_list())[[pos[c] for c in caps.to_list()]]
    path = microlens / "microlens_items.parquet"
    if not path.exists():
        sys.exit(f"{path} not found: pass --microlens DIR (../shared/data/microlens)")
    items = pl.read_parquet(path)
    titles = items.select(pl.coalesce("title_full_50k", "title_100k").fill_null(""))
    v = emb.embed(titles.to_series().to_list())
    if source == "microlens_x10":
        rng = np.random.default_rng(1)
        v = np.repeat(v, 10, axis=0) + rng.normal(0, 0.05, (len(v) * 10, v.shape[1])).astype(
            np.float32
        )
        v = (v / np.linalg.norm(v, axis=1, keepdims=True))[rng.permutation(len(v))]
    return v.astype(np.float32)


def _without_self(ids: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` found rows other than the row itself (a short row repeats its best)."""
    n = len(ids)
    valid = (ids != np.arange(n)[:, None]) & (ids >= 0)
    order = np.argsort(~valid, axis=1, kind="stable")[:, :k]
    out = np.take_along_axis(ids, order, axis=1).astype(np.int64)
    for i in np.flatnonzero(valid.sum(axis=1) < k):
        found = ids[i][valid[i]]
        out[i] = found[np.arange(k) % len(found)] if len(found) else (i + 1) % n
    return out


def _faiss_ivf(
    v: np.ndarray,
    k: int,
    *,
    nprobe: int = 4,
    niter: int = 25,
    maxpts: int = 256,
    lists_x10: int = 10,
    sq8: int = 0,
) -> np.ndarray:
    """faiss IVF (flat or 8-bit scalar quantised) with ``lists_x10 / 10 * sqrt(n)`` lists."""
    faiss: Any = importlib.import_module("faiss")
    d = v.shape[1]
    nlist = max(1, round(math.sqrt(len(v)) * lists_x10 / 10))
    quantizer = faiss.IndexFlatIP(d)
    if sq8:
        qt = faiss.ScalarQuantizer.QT_8bit
        index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, qt, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = 0
    index.cp.niter = niter
    index.cp.max_points_per_centroid = maxpts
    index.cp.min_points_per_centroid = 1
    index.train(v)
    index.add(v)
    index.nprobe = nprobe
    _, ids = index.search(v, k + 1)
    return _without_self(ids, k)


def _faiss_hnsw(
    v: np.ndarray, k: int, *, m: int = 32, ef_build: int = 80, ef: int = 64
) -> np.ndarray:
    faiss: Any = importlib.import_module("faiss")
    index = faiss.IndexHNSWFlat(v.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_build
    index.add(v)
    index.hnsw.efSearch = ef
    _, ids = index.search(v, k + 1)
    return _without_self(ids, k)


def _pynndescent(v: np.ndarray, k: int) -> np.ndarray:
    nnd: Any = importlib.import_module("pynndescent")
    graph = nnd.NNDescent(v, metric="dot", n_neighbors=k + 1, random_state=0, compressed=True)
    ids, _ = graph.neighbor_graph
    return _without_self(ids, k)


METHODS: dict[str, Callable[..., np.ndarray]] = {
    "ivf": lambda v, k, **kw: ivf_knn(v, k, **kw),
    "exact": lambda v, k: exact_knn(v, k),
    "faiss_ivf": _faiss_ivf,
    "faiss_hnsw": _faiss_hnsw,
    "pynndescent": _pynndescent,
}
_NEEDS = {"faiss_ivf": "faiss", "faiss_hnsw": "faiss", "pynndescent": "pynndescent"}


def _emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def _parse(spec: str) -> list[tuple[str, dict[str, int]]]:
    out = []
    for part in filter(None, spec.split(";")):
        name, _, kv = part.partition(":")
        if name not in METHODS:
            sys.exit(f"unknown method {name!r}; valid: {sorted(METHODS)}")
        out.append((name, {x.split("=")[0]: int(x.split("=")[1]) for x in kv.split(",") if x}))
    return out


def main() -> None:
    """Parse arguments, embed or load the vectors, time every variant, print JSON lines."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--vectors", type=Path, help="an n x d float32 .npy of unit vectors")
    p.add_argument("--embed", help="microlens | microlens_x10 | demo:N")
    p.add_argument("--microlens", type=Path, default=MICROLENS, help="MicroLens data folder")
    p.add_argument("--save", type=Path, help="where to save embedded vectors (.npy)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--sample", type=int, default=1000, help="rows whose recall is measured")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="BLAS and OpenMP threads; 0: default")
    p.add_argument("--variants", default="ivf;faiss_ivf;pynndescent", help="m:key=val,...;...")
    a = p.parse_args()
    variants = _parse(a.variants)
    if a.embed:
        v = embed(a.embed, a.microlens)
        if a.save:
            np.save(a.save, v)
    elif a.vectors:
        v = np.load(a.vectors)
    else:
        sys.exit("give --vectors FILE.npy or --embed SOURCE")
    v = np.ascontiguousarray(v, dtype=np.float32)
    if a.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=a.threads)
        if importlib.util.find_spec("faiss"):
            importlib.import_module("faiss").omp_set_num_threads(a.threads)
    n, k = len(v), a.k
    rows = np.sort(np.random.default_rng(0).choice(n, size=min(n, a.sample), replace=False))
    sims = v[rows] @ v.T
    sims[np.arange(len(rows)), rows] = -np.inf
    kth = -np.partition(-sims, k - 1, axis=1)[:, k - 1]
    head = {"n": n, "d": int(v.shape[1]), "k": k, "sample": len(rows), "threads": a.threads}
    head["distinct_rows"] = len(np.unique(v, axis=0))
    _emit({**head, "loadavg": os.getloadavg()})
    for rep in range(a.repeat):
        for name, kw in variants:
            lib = _NEEDS.get(name)
            if lib and importlib.util.find_spec(lib) is None:
                _emit({"method": name, "skipped": f"{lib} is not installed"})
                continue
            t0 = time.perf_counter()
            g = METHODS[name](v, k, **kw)
            secs = time.perf_counter() - t0
            assert g.shape == (n, k) and not (g == np.arange(n)[:, None]).any()
            got = np.take_along_axis(sims, g[rows], axis=1)
            hits = [len(set(g[r][got[i] >= kth[i] - 1e-5])) for i, r in enumerate(rows)]
            line = {"rep": rep, "method": name, **kw, "build_s": round(secs, 2)}
            line["recall"] = round(float(np.mean(np.minimum(hits, k))) / k, 4)
            line["load1"] = round(os.getloadavg()[0], 2)
            _emit(line)


if __name__ == "__main__":
    main()
