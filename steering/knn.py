"""Nearest-neighbour graphs over unit vectors: exact for small catalogues, IVF above.

The concept catalogue smooths scores over each caption's nearest captions. An exact graph
costs ``n**2`` dot products (~17 s at 20k clips on 2 cores, hours at 1M); the inverted-file
(IVF) graph clusters the vectors with spherical k-means into ``~sqrt(n)`` lists and compares a
list's members only with the members of its ``n_probe`` nearest lists, so the cost grows like
``n**1.5``. Smoothing tolerates a missed neighbour, so the approximation is enough: recall@10 is
measured in ``tests/steering/test_knn.py``.
"""

from __future__ import annotations

import logging
import time

import numpy as np

logger = logging.getLogger(__name__)

_BLOCK = 2048


def _top_k_rows(block: np.ndarray, k: int) -> np.ndarray:
    """Column positions of the ``k`` largest values of every row (unordered)."""
    k = min(k, block.shape[1])
    return np.argpartition(-block, k - 1, axis=1)[:, :k]


def exact_knn(vectors: np.ndarray, k: int) -> np.ndarray:
    """Row indices of every row's ``k`` nearest other rows by dot product (``n x k``).

    Parameters
    ----------
    vectors : np.ndarray
        ``n x d`` float32 unit vectors (zero rows are allowed: they score 0 with everything).
    k : int
        Neighbours per row; must be below ``n``.

    Returns
    -------
    np.ndarray
        ``n x k`` int64 neighbour rows, unordered within a row, never the row itself.
    """
    return knn_rows(vectors, np.arange(len(vectors)), k)


def knn_rows(vectors: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Exact ``k`` nearest other rows of the given ``rows`` only (``len(rows) x k``).

    Used to extend a graph when rows are appended: the cost is ``len(rows) x n``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    out = np.zeros((len(rows), k), dtype=np.int64)
    for start in range(0, len(rows), _BLOCK):
        q = rows[start : start + _BLOCK]
        block = vectors[q] @ vectors.T
        block[np.arange(len(q)), q] = -np.inf
        out[start : start + len(q)] = _top_k_rows(block, k)
    return out


def _spherical_kmeans(
    vectors: np.ndarray, n_lists: int, *, iterations: int, rng: np.random.Generator
) -> np.ndarray:
    """Unit centroids fitted on a sample of at most ``64 * n_lists`` rows."""
    n = len(vectors)
    sample = vectors[rng.choice(n, size=min(n, 64 * n_lists), replace=False)]
    centroids = sample[rng.choice(len(sample), size=n_lists, replace=False)].copy()
    for _ in range(iterations):
        assign = np.argmax(sample @ centroids.T, axis=1)
        sums = np.zeros_like(centroids)
        np.add.at(sums, assign, sample)
        norms = np.linalg.norm(sums, axis=1)
        live = norms > 0  # an emptied list keeps its old centroid
        centroids[live] = sums[live] / norms[live, None]
    return centroids


def ivf_knn(
    vectors: np.ndarray,
    k: int,
    *,
    n_lists: int | None = None,
    n_probe: int = 4,
    iterations: int = 8,
    seed: int = 0,
) -> np.ndarray:
    """Approximate ``k`` nearest neighbours of every row (same contract as :func:`exact_knn`).

    Parameters
    ----------
    vectors : np.ndarray
        ``n x d`` float32 unit vectors.
    k : int
        Neighbours per row; must be below ``n``.
    n_lists : int, optional
        Number of k-means lists (default ``round(sqrt(n))``).
    n_probe : int
        Lists searched for the members of one list: the list itself and its nearest others.
    iterations : int
        Spherical k-means iterations.
    seed : int
        Sampling seed (the graph is deterministic for a seed).

    Returns
    -------
    np.ndarray
        ``n x k`` int64 neighbour rows; a row whose probed lists hold fewer than ``k`` other rows
        repeats its best candidates (and one whose lists hold no other row lists itself: its
        smoothing then keeps its own score).
    """
    t0 = time.perf_counter()
    n = len(vectors)
    rng = np.random.default_rng(seed)
    n_lists = max(1, min(n, n_lists or round(np.sqrt(n))))
    n_probe = max(1, min(n_probe, n_lists))
    centroids = _spherical_kmeans(vectors, n_lists, iterations=iterations, rng=rng)
    assign = np.empty(n, dtype=np.int64)
    for start in range(0, n, _BLOCK):
        assign[start : start + _BLOCK] = np.argmax(
            vectors[start : start + _BLOCK] @ centroids.T, axis=1
        )
    order = np.argsort(assign, kind="stable")
    bounds = np.searchsorted(assign[order], np.arange(n_lists + 1))
    members = [order[bounds[c] : bounds[c + 1]] for c in range(n_lists)]
    probes = _top_k_rows(centroids @ centroids.T, n_probe)
    out = np.zeros((n, k), dtype=np.int64)
    for c in range(n_lists):
        rows = members[c]
        if len(rows) == 0:
            continue
        cand = np.concatenate([members[p] for p in probes[c]])
        cand_vecs = vectors[cand]
        for start in range(0, len(rows), _BLOCK):
            q = rows[start : start + _BLOCK]
            block = vectors[q] @ cand_vecs.T
            block[cand[None, :] == q[:, None]] = -np.inf  # never the row itself
            top = _top_k_rows(block, k)
            if top.shape[1] < k:  # a tiny neighbourhood: repeat the best ones
                top = top[:, np.arange(k) % top.shape[1]]
            out[q] = cand[top]
    logger.info(
        "ivf knn rows=%d lists=%d probe=%d ms=%.0f",
        n,
        n_lists,
        n_probe,
        (time.perf_counter() - t0) * 1e3,
    )
    return out


def knn_graph(vectors: np.ndarray, k: int, *, exact_max_rows: int = 30_000) -> np.ndarray:
    """The ``k``-nearest-neighbour graph: exact up to ``exact_max_rows`` rows, IVF above."""
    if len(vectors) <= exact_max_rows:
        return exact_knn(vectors, k)
    return ivf_knn(vectors, k)
