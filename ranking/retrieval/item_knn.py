"""Item-item neighbourhood models: cosine kNN on BM25/log weights, and RP3beta."""

from __future__ import annotations

import logging
import time
from typing import Literal

import numpy as np
import polars as pl
import scipy.sparse as sp

from ranking.retrieval._matrix import DenseScorer, InteractionMatrix, bm25_weights, log_weights
from ranking.retrieval.errors import RetrievalError

logger = logging.getLogger(__name__)

Weighting = Literal["bm25", "log", "binary"]
_WEIGHTINGS = ("bm25", "log", "binary")


class ItemKnnModel(DenseScorer):
    """Scores ``x_u @ S`` with ``S`` a sparse item x item similarity (top ``k`` per item).

    Attributes
    ----------
    user_ids, item_ids : np.ndarray
        Dataset ids of the rows of ``seen`` and of the score columns.
    seen : sp.csr_matrix
        The weighted training matrix the scores are computed from.
    similarity : sp.csr_matrix
        ``similarity[i, j]``: how much having item ``i`` recommends item ``j`` (zero diagonal).
    """

    def __init__(
        self,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        seen: sp.csr_matrix,
        similarity: sp.csr_matrix,
    ) -> None:
        super().__init__()
        self.user_ids = user_ids
        self.item_ids = item_ids
        self.seen = seen
        self.similarity = similarity

    def score_rows(self, rows: np.ndarray) -> np.ndarray:
        """Scores ``x_u @ S`` for the users at ``rows``."""
        return np.asarray((self.seen[rows] @ self.similarity).todense(), dtype=np.float64)


def _keep_top_k(sim: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each row of ``sim`` (diagonal dropped)."""
    sim = sim.tolil()
    sim.setdiag(0.0)
    sim = sim.tocsr()
    sim.eliminate_zeros()
    indptr, indices, data = sim.indptr, sim.indices, sim.data
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    for r in range(sim.shape[0]):
        lo, hi = indptr[r], indptr[r + 1]
        if hi == lo:
            continue
        d = data[lo:hi]
        c = indices[lo:hi]
        if hi - lo > k:
            pick = np.argpartition(-d, k - 1)[:k]
            d, c = d[pick], c[pick]
        rows.append(np.full(len(c), r, dtype=np.int64))
        cols.append(c)
        vals.append(d)
    if not rows:
        return sp.csr_matrix(sim.shape, dtype=np.float64)
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=sim.shape
    )


def _weigh(matrix: sp.csr_matrix, weighting: Weighting) -> sp.csr_matrix:
    if weighting not in _WEIGHTINGS:
        msg = f"unknown weighting {weighting!r}; valid: {list(_WEIGHTINGS)}"
        raise RetrievalError(msg)
    if weighting == "binary":
        out = matrix.copy()
        out.data = np.ones_like(out.data)
        return out
    logged = log_weights(matrix)
    return bm25_weights(logged) if weighting == "bm25" else logged


def fit_item_knn(
    interactions: pl.DataFrame,
    *,
    k: int = 100,
    weighting: Weighting = "bm25",
    shrink: float = 0.0,
    item_ids: np.ndarray | None = None,
) -> ItemKnnModel:
    """Fit item-item cosine kNN.

    Parameters
    ----------
    interactions : pl.DataFrame
        ``user_id, item_id, weight`` training rows.
    k : int
        Neighbours kept per item.
    weighting : {"bm25", "log", "binary"}
        How listen counts become matrix entries: BM25 over ``log1p``, ``log1p`` alone, or 0/1.
    shrink : float
        Added to the cosine denominator (damps similarities from few co-listeners).
    item_ids : np.ndarray, optional
        A fixed item id space for the score columns.

    Returns
    -------
    ItemKnnModel
    """
    start = time.perf_counter()
    im = InteractionMatrix.from_frame(interactions, item_ids=item_ids)
    x = _weigh(im.matrix, weighting)
    xc = x.tocsc()
    norms = np.sqrt(np.asarray(xc.multiply(xc).sum(axis=0)).ravel())
    dot = (xc.T @ xc).tocsr()
    coo = dot.tocoo()
    denom = norms[coo.row] * norms[coo.col] + shrink
    sim = sp.csr_matrix((coo.data / np.maximum(denom, 1e-12), (coo.row, coo.col)), shape=dot.shape)
    sim = _keep_top_k(sim, k)
    logger.info(
        "item_knn fit users=%d items=%d k=%d nnz=%d ms=%.0f",
        len(im.user_ids),
        len(im.item_ids),
        k,
        sim.nnz,
        1000 * (time.perf_counter() - start),
    )
    return ItemKnnModel(im.user_ids, im.item_ids, x.tocsr(), sim)


def fit_rp3beta(
    interactions: pl.DataFrame,
    *,
    alpha: float = 1.0,
    beta: float = 0.5,
    k: int = 200,
    item_ids: np.ndarray | None = None,
) -> ItemKnnModel:
    """Fit RP3beta (Paudel et al. 2017): 3-step random-walk item similarity, popularity-damped.

    ``S = (P_iu @ P_ui) / pop^beta`` with row-stochastic transition matrices raised to
    ``alpha``; scores are ``P_ui[u] @ S``.

    Parameters
    ----------
    interactions : pl.DataFrame
        ``user_id, item_id, weight`` training rows (used as 0/1).
    alpha : float
        Exponent on the transition probabilities.
    beta : float
        Popularity damping exponent.
    k : int
        Neighbours kept per item.
    item_ids : np.ndarray, optional
        A fixed item id space for the score columns.

    Returns
    -------
    ItemKnnModel
    """
    start = time.perf_counter()
    im = InteractionMatrix.from_frame(interactions, item_ids=item_ids)
    x = im.matrix.copy()
    x.data = np.ones_like(x.data)
    user_deg = np.asarray(x.sum(axis=1)).ravel()
    item_deg = np.asarray(x.sum(axis=0)).ravel()
    p_ui = sp.diags(1.0 / np.maximum(user_deg, 1.0)) @ x
    p_iu = sp.diags(1.0 / np.maximum(item_deg, 1.0)) @ x.T.tocsr()
    if alpha != 1.0:
        p_ui = p_ui.power(alpha)
        p_iu = p_iu.power(alpha)
    sim = (p_iu @ p_ui).tocsr()
    sim = sim @ sp.diags(1.0 / np.power(np.maximum(item_deg, 1.0), beta))
    sim = _keep_top_k(sim.tocsr(), k)
    logger.info(
        "rp3beta fit users=%d items=%d nnz=%d ms=%.0f",
        len(im.user_ids),
        len(im.item_ids),
        sim.nnz,
        1000 * (time.perf_counter() - start),
    )
    return ItemKnnModel(im.user_ids, im.item_ids, sp.csr_matrix(p_ui), sim)
