"""The caption kNN graph: IVF agrees with the exact graph and never lists a row itself."""

from __future__ import annotations

import numpy as np

from steering.knn import exact_knn, ivf_knn, knn_graph, knn_rows


def _clustered(n: int, d: int = 64, clusters: int = 40, noise: float = 1.5) -> np.ndarray:
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(clusters, d))
    v = centres[rng.integers(0, clusters, n)] + noise * rng.normal(size=(n, d))
    return np.asarray(v / np.linalg.norm(v, axis=1, keepdims=True), dtype=np.float32)


def test_ivf_graph_recalls_the_exact_neighbours() -> None:
    v = _clustered(4000)
    exact = exact_knn(v, 10)
    approx = ivf_knn(v, 10)
    assert approx.shape == exact.shape == (4000, 10)
    recall = np.mean([len(set(exact[i]) & set(approx[i])) / 10 for i in range(len(v))])
    assert recall >= 0.8, recall
    rows = np.arange(len(v))[:, None]
    assert not (approx == rows).any() and not (exact == rows).any()


def test_exact_graph_finds_the_planted_twin() -> None:
    v = _clustered(500)
    v[1] = v[0] + 1e-3  # row 1 is row 0 almost exactly
    v[1] /= np.linalg.norm(v[1])
    assert 1 in exact_knn(v, 3)[0]
    assert 1 in ivf_knn(v, 3, n_lists=20)[0]


def test_graph_switches_to_ivf_above_the_exact_limit() -> None:
    v = _clustered(600)
    assert (knn_graph(v, 5, exact_max_rows=1000) == exact_knn(v, 5)).all()
    g = knn_graph(v, 5, exact_max_rows=100)
    assert g.shape == (600, 5) and not (g == np.arange(600)[:, None]).any()


def test_tiny_lists_pad_with_their_best_rows() -> None:
    v = _clustered(30, clusters=3)
    g = ivf_knn(v, 8, n_lists=10, n_probe=1)  # ~3 rows per list: fewer than 8 to compare
    assert g.shape == (30, 8)
    assert (g >= 0).all() and (g < 30).all()


def test_appended_rows_get_the_same_neighbours_as_a_full_build() -> None:
    v = _clustered(900)
    full = exact_knn(v, 6)
    tail = knn_rows(v, np.arange(850, 900), 6)
    assert (np.sort(tail, axis=1) == np.sort(full[850:], axis=1)).all()
