"""Collaborative matrix factorisation in torch: weighted ALS on implicit feedback.

The model follows Hu, Koren & Volinsky (2008): every (user, item) cell has preference
``p = 1`` when the user engaged and ``0`` otherwise, with confidence ``c = 1 + alpha * w``
where ``w`` is BM25 over ``log1p(count)`` (or ``log1p(count)`` alone). User and item factors are
solved in turn by a few batched conjugate-gradient steps (the closed-form solution,
approximated as in ``implicit``).

Scores are plain dot products ``user_vector @ item_vector``, so the item vectors can be
indexed in a vector store (the ``collab`` named vector) and searched with the user vector
under a dot-product metric.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from ranking.retrieval._matrix import (
    DenseScorer,
    InteractionMatrix,
    bm25_weights,
    log_weights,
)
from ranking.retrieval.errors import RetrievalError

logger = logging.getLogger(__name__)

ConfidenceWeighting = Literal["log", "bm25"]


@dataclass(frozen=True)
class CollabConfig:
    """Hyper-parameters of :func:`fit_collab` (kept on the model for provenance)."""

    dim: int
    epochs: int
    reg: float
    alpha: float
    weighting: ConfidenceWeighting
    seed: int


class CollabModel(DenseScorer):
    """User and item factors whose dot product scores a (user, item) pair.

    Attributes
    ----------
    user_ids, item_ids : np.ndarray
        Dataset ids, in the row order of ``user_vectors`` / ``item_vectors``.
    user_vectors : np.ndarray
        ``n_users x dim`` float32.
    item_vectors : np.ndarray
        ``n_items x dim`` float32.
    seen : sp.csr_matrix
        The training interactions (for ``exclude_seen``).
    config : CollabConfig
        The hyper-parameters it was fitted with.
    """

    def __init__(
        self,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        user_vectors: np.ndarray,
        item_vectors: np.ndarray,
        seen: sp.csr_matrix,
        config: CollabConfig,
    ) -> None:
        super().__init__()
        self.user_ids = user_ids
        self.item_ids = item_ids
        self.user_vectors = user_vectors
        self.item_vectors = item_vectors
        self.seen = seen
        self.config = config
        self._item_index: dict[int, int] | None = None

    @property
    def item_index(self) -> dict[int, int]:
        """Map from dataset item id to row of ``item_vectors``."""
        if self._item_index is None:
            self._item_index = {int(v): i for i, v in enumerate(self.item_ids)}
        return self._item_index

    def score_rows(self, rows: np.ndarray) -> np.ndarray:
        """Dot-product scores over every item for the users at ``rows``."""
        return np.asarray(self.user_vectors[rows] @ self.item_vectors.T, dtype=np.float64)

    def user_vector(self, user_id: int) -> np.ndarray | None:
        """The user's vector, or ``None`` for a user the model never saw."""
        row = self.user_index.get(int(user_id))
        return None if row is None else self.user_vectors[row]


def _solve_side(
    fixed: torch.Tensor,
    current: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    conf: torch.Tensor,
    reg: float,
    *,
    cg_steps: int,
) -> torch.Tensor:
    """Approximately solve ``(FᵀF + Fᵀ(C-I)F + λI) x = FᵀC p`` for every row entity.

    Batched conjugate gradient warm-started from ``current`` (as in ``implicit``): the
    ``d x d`` system of each entity is never formed, each step costs ``O(nnz * d)``.
    ``rows``/``cols``/``conf`` list the observed cells: entity ``rows[k]`` engaged with the
    fixed-side entity ``cols[k]`` at confidence ``conf[k]``.
    """
    gram = fixed.T @ fixed
    f_obs = fixed[cols]
    extra = conf - 1.0

    def matvec(x: torch.Tensor) -> torch.Tensor:
        inner = (f_obs * x[rows]).sum(dim=1) * extra
        out = x @ gram + reg * x
        return out.index_add_(0, rows, inner[:, None] * f_obs)

    b = torch.zeros_like(current).index_add_(0, rows, conf[:, None] * f_obs)
    x = current.clone()
    r = b - matvec(x)
    p = r.clone()
    rs_old = (r * r).sum(dim=1)
    for _ in range(cg_steps):
        ap = matvec(p)
        step = rs_old / (p * ap).sum(dim=1).clamp_min(1e-20)
        x += step[:, None] * p
        r -= step[:, None] * ap
        rs_new = (r * r).sum(dim=1)
        p = r + (rs_new / rs_old.clamp_min(1e-20))[:, None] * p
        rs_old = rs_new
    return x


def fit_collab(
    interactions: pl.DataFrame,
    *,
    dim: int = 64,
    epochs: int = 15,
    seed: int = 0,
    reg: float = 5.0,
    alpha: float = 0.2,
    weighting: ConfidenceWeighting = "bm25",
    cg_steps: int = 3,
    item_ids: np.ndarray | None = None,
    threads: int | None = None,
) -> CollabModel:
    """Fit user and item factors by weighted alternating least squares (torch).

    Parameters
    ----------
    interactions : pl.DataFrame
        ``user_id, item_id, weight`` training rows; ``weight`` is an engagement strength
        (a listen count), turned into confidence ``1 + alpha * s`` with ``s`` the BM25
        weight of ``log1p(weight)`` (or ``log1p(weight)`` itself, see ``weighting``).
    dim : int
        Factor dimension.
    epochs : int
        ALS sweeps (each solves users, then items).
    seed : int
        Seed of the random initial item factors.
    reg : float
        L2 penalty on every factor.
    alpha : float
        Confidence scale.
    weighting : {"log", "bm25"}
        ``log1p(weight)`` or BM25 over it as the confidence signal.
    cg_steps : int
        Conjugate-gradient steps per entity per half-sweep.
    item_ids : np.ndarray, optional
        A fixed item id space (items without rows shrink towards zero vectors).
    threads : int, optional
        Set ``torch.set_num_threads`` for the fit (left untouched when ``None``).

    Returns
    -------
    CollabModel
    """
    if dim <= 0 or epochs <= 0:
        msg = f"fit_collab needs positive dim and epochs, got dim={dim} epochs={epochs}"
        raise RetrievalError(msg)
    if weighting not in ("log", "bm25"):
        msg = f"unknown weighting {weighting!r}; valid: ['log', 'bm25']"
        raise RetrievalError(msg)
    if threads is not None:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    im = InteractionMatrix.from_frame(interactions, item_ids=item_ids)
    signal = log_weights(im.matrix)
    if weighting == "bm25":
        signal = bm25_weights(signal)
    coo = signal.tocoo()
    conf = torch.from_numpy(1.0 + alpha * coo.data.astype(np.float32))
    u_idx = torch.from_numpy(coo.row.astype(np.int64))
    i_idx = torch.from_numpy(coo.col.astype(np.int64))
    n_users, n_items = signal.shape
    gen = torch.Generator().manual_seed(seed)
    items = torch.randn(n_items, dim, generator=gen, dtype=torch.float32) * 0.01
    users = torch.randn(n_users, dim, generator=gen, dtype=torch.float32) * 0.01
    with torch.no_grad():
        for _ in range(epochs):
            users = _solve_side(items, users, u_idx, i_idx, conf, reg, cg_steps=cg_steps)
            items = _solve_side(users, items, i_idx, u_idx, conf, reg, cg_steps=cg_steps)
    config = CollabConfig(
        dim=dim, epochs=epochs, reg=reg, alpha=alpha, weighting=weighting, seed=seed
    )
    logger.info(
        "collab fit users=%d items=%d dim=%d epochs=%d ms=%.0f",
        n_users,
        n_items,
        dim,
        epochs,
        1000 * (time.perf_counter() - start),
    )
    return CollabModel(
        im.user_ids,
        im.item_ids,
        users.numpy().astype(np.float32),
        items.numpy().astype(np.float32),
        im.matrix,
        config,
    )
