"""EASE: the closed-form shallow autoencoder of Steck (2019), in numpy."""

from __future__ import annotations

import logging
import time

import numpy as np
import polars as pl
import scipy.sparse as sp
from scipy.linalg import lapack

from ranking.retrieval._matrix import DenseScorer, InteractionMatrix, log_weights
from ranking.retrieval.errors import RetrievalError

logger = logging.getLogger(__name__)


class EaseModel(DenseScorer):
    """An item x item weight matrix ``B`` with a zero diagonal; scores are ``x_u @ B``.

    Items with fewer than ``min_listeners`` users are left out of ``B``; they score
    ``-inf`` so they are never recommended (they still appear in ``item_ids``).

    Attributes
    ----------
    user_ids, item_ids : np.ndarray
        Dataset ids of the rows of ``seen`` and of the score columns.
    seen : sp.csr_matrix
        The training matrix as fed to the model (binary or ``log1p`` weights).
    weights : np.ndarray
        ``B`` over the kept items (``len(kept) x len(kept)``).
    kept : np.ndarray
        Column positions (into ``item_ids``) of the items inside ``B``.
    """

    def __init__(
        self,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        seen: sp.csr_matrix,
        weights: np.ndarray,
        kept: np.ndarray,
    ) -> None:
        super().__init__()
        self.user_ids = user_ids
        self.item_ids = item_ids
        self.seen = seen
        self.weights = weights
        self.kept = kept

    def score_rows(self, rows: np.ndarray) -> np.ndarray:
        """Scores ``x_u @ B`` over ``item_ids`` for the users at ``rows``."""
        x = self.seen[rows][:, self.kept]
        out = np.full((len(rows), len(self.item_ids)), -np.inf, dtype=np.float64)
        out[:, self.kept] = np.asarray(x @ self.weights)
        return out


def _spd_inverse(gram: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive-definite matrix via Cholesky (LAPACK potrf/potri)."""
    factor, info = lapack.dpotrf(gram, lower=0, overwrite_a=1)
    if info != 0:
        msg = f"EASE gram matrix is not positive definite (LAPACK potrf info={info})"
        raise RetrievalError(msg)
    upper, info = lapack.dpotri(factor, lower=0, overwrite_c=1)
    if info != 0:
        msg = f"EASE gram matrix could not be inverted (LAPACK potri info={info})"
        raise RetrievalError(msg)
    return np.asarray(np.triu(upper) + np.triu(upper, 1).T)


def fit_ease(
    interactions: pl.DataFrame,
    *,
    lam: float = 50.0,
    min_listeners: int = 2,
    binary: bool = True,
    item_ids: np.ndarray | None = None,
) -> EaseModel:
    """Fit EASE in closed form: ``P = (XᵀX + λI)⁻¹``, ``B = I - P / diag(P)``.

    Parameters
    ----------
    interactions : pl.DataFrame
        ``user_id, item_id, weight`` training rows.
    lam : float
        L2 penalty on ``B``.
    min_listeners : int
        Items with fewer distinct users are left out (and never recommended).
    binary : bool
        Fit on a 0/1 matrix; otherwise on ``log1p(weight)``.
    item_ids : np.ndarray, optional
        A fixed item id space for the score columns (default: the items in ``interactions``).

    Returns
    -------
    EaseModel
    """
    if lam <= 0:
        msg = f"EASE needs a positive lam, got {lam}"
        raise RetrievalError(msg)
    start = time.perf_counter()
    im = InteractionMatrix.from_frame(interactions, item_ids=item_ids)
    x = im.matrix.copy()
    if binary:
        x.data = np.ones_like(x.data)
    else:
        x = log_weights(x)
    listeners = np.asarray((im.matrix > 0).sum(axis=0)).ravel()
    kept = np.flatnonzero(listeners >= min_listeners)
    if kept.size == 0:
        msg = f"no item has >= {min_listeners} users; EASE has nothing to fit"
        raise RetrievalError(msg)
    xk = x[:, kept].tocsc()
    gram = np.asarray((xk.T @ xk).todense(), dtype=np.float64)
    gram[np.diag_indices_from(gram)] += lam
    inv = _spd_inverse(gram)
    weights = -inv / np.diag(inv)
    weights[np.diag_indices_from(weights)] = 0.0
    logger.info(
        "ease fit users=%d items=%d kept=%d ms=%.0f",
        len(im.user_ids),
        len(im.item_ids),
        kept.size,
        1000 * (time.perf_counter() - start),
    )
    return EaseModel(im.user_ids, im.item_ids, x.tocsr(), weights, kept)
