"""Shared plumbing for the retrieval models: the user x item matrix and top-k ranking."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sp

from ranking.retrieval.errors import RetrievalError

INTERACTION_COLUMNS = ("user_id", "item_id", "weight")


def check_interactions(interactions: pl.DataFrame) -> None:
    """Raise :class:`RetrievalError` when the frame lacks the interaction columns or rows.

    Parameters
    ----------
    interactions : pl.DataFrame
        Frame expected to carry ``user_id``, ``item_id`` and ``weight``.
    """
    missing = [c for c in INTERACTION_COLUMNS if c not in interactions.columns]
    if missing:
        msg = f"interactions lack columns {missing}; expected {list(INTERACTION_COLUMNS)}"
        raise RetrievalError(msg)
    if interactions.height == 0:
        msg = "interactions are empty; a retrieval model needs at least one row"
        raise RetrievalError(msg)


@dataclass
class InteractionMatrix:
    """A sparse user x item matrix of engagement weights with its id maps.

    Attributes
    ----------
    user_ids : np.ndarray
        The dataset's user ids, in row order.
    item_ids : np.ndarray
        The dataset's item ids, in column order.
    matrix : sp.csr_matrix
        ``matrix[u, i]`` is the summed weight of user ``u`` on item ``i`` (0 when none).
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    matrix: sp.csr_matrix
    user_index: dict[int, int] = field(init=False, repr=False)
    item_index: dict[int, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.user_index = {int(u): i for i, u in enumerate(self.user_ids)}
        self.item_index = {int(v): i for i, v in enumerate(self.item_ids)}

    @classmethod
    def from_frame(
        cls,
        interactions: pl.DataFrame,
        *,
        user_ids: np.ndarray | None = None,
        item_ids: np.ndarray | None = None,
    ) -> InteractionMatrix:
        """Build the matrix from ``user_id, item_id, weight`` rows.

        Parameters
        ----------
        interactions : pl.DataFrame
            Rows of ``user_id, item_id, weight``; duplicate pairs are summed.
        user_ids, item_ids : np.ndarray, optional
            Fixed id spaces (rows with ids outside them are dropped); by default the sorted
            distinct ids of the frame.

        Returns
        -------
        InteractionMatrix
        """
        check_interactions(interactions)
        users = (
            np.sort(interactions["user_id"].unique().to_numpy())
            if user_ids is None
            else np.asarray(user_ids)
        )
        items = (
            np.sort(interactions["item_id"].unique().to_numpy())
            if item_ids is None
            else np.asarray(item_ids)
        )
        u_map = pl.DataFrame({"user_id": users, "_row": np.arange(len(users), dtype=np.int64)})
        i_map = pl.DataFrame({"item_id": items, "_col": np.arange(len(items), dtype=np.int64)})
        frame = (
            interactions.select(
                pl.col("user_id").cast(u_map["user_id"].dtype),
                pl.col("item_id").cast(i_map["item_id"].dtype),
                pl.col("weight").cast(pl.Float64),
            )
            .join(u_map, on="user_id", how="inner")
            .join(i_map, on="item_id", how="inner")
        )
        matrix = sp.csr_matrix(
            (frame["weight"].to_numpy(), (frame["_row"].to_numpy(), frame["_col"].to_numpy())),
            shape=(len(users), len(items)),
            dtype=np.float64,
        )
        matrix.sum_duplicates()
        return cls(user_ids=users, item_ids=items, matrix=matrix)

    def rows_for(self, user_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Row positions of ``user_ids`` (``-1`` for a user the matrix has never seen)."""
        return np.array([self.user_index.get(int(u), -1) for u in user_ids], dtype=np.int64)


def log_weights(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Return ``log(1 + weight)`` with the same sparsity."""
    out = matrix.copy().astype(np.float64)
    out.data = np.log1p(out.data)
    return out


def bm25_weights(matrix: sp.csr_matrix, *, k1: float = 100.0, b: float = 0.8) -> sp.csr_matrix:
    """BM25-weight a user x item matrix over items, as ``implicit.nearest_neighbours`` does.

    Parameters
    ----------
    matrix : sp.csr_matrix
        User x item weights (typically already ``log1p`` of the counts).
    k1, b : float
        The BM25 saturation and length-normalisation constants.

    Returns
    -------
    sp.csr_matrix
        The weighted matrix, same shape and sparsity.
    """
    coo = matrix.tocoo()
    n_users = matrix.shape[0]
    item_df = np.bincount(coo.col, minlength=matrix.shape[1]).astype(np.float64)
    idf = np.log(n_users) - np.log1p(item_df)
    row_sums = np.asarray(matrix.sum(axis=1)).ravel()
    length_norm = (1.0 - b) + b * row_sums / max(row_sums.mean(), 1e-12)
    data = coo.data * (k1 + 1.0) / (k1 * length_norm[coo.row] + coo.data) * idf[coo.col]
    return sp.csr_matrix((data, (coo.row, coo.col)), shape=matrix.shape)


def top_k_frame(
    scores: np.ndarray,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    k: int,
) -> pl.DataFrame:
    """Turn a dense ``users x items`` score block into the top ``k`` rows per user.

    Scores of ``-inf`` (excluded items) never appear in the output.

    Parameters
    ----------
    scores : np.ndarray
        Score block, one row per entry of ``user_ids``.
    user_ids, item_ids : np.ndarray
        Ids for the rows and columns of ``scores``.
    k : int
        How many items to keep per user.

    Returns
    -------
    pl.DataFrame
        ``user_id, item_id, score, rank`` (rank from 1), sorted by user then rank.
    """
    k = min(k, scores.shape[1])
    if k <= 0 or scores.shape[0] == 0:
        return pl.DataFrame(
            schema={
                "user_id": pl.Int64,
                "item_id": pl.Int64,
                "score": pl.Float64,
                "rank": pl.Int64,
            }
        )
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    top = np.take_along_axis(part, order, axis=1)
    top_scores = np.take_along_axis(part_scores, order, axis=1)
    frame = pl.DataFrame(
        {
            "user_id": np.repeat(np.asarray(user_ids, dtype=np.int64), k),
            "item_id": np.asarray(item_ids, dtype=np.int64)[top.ravel()],
            "score": top_scores.ravel().astype(np.float64),
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int64), len(user_ids)),
        }
    )
    return frame.filter(pl.col("score").is_finite())


class DenseScorer:
    """Base for models that score every item for a user; gives ``recommend`` for free.

    Subclasses set ``user_ids``, ``item_ids``, ``seen`` (a CSR user x item matrix in the
    model's own spaces) and implement :meth:`score_rows`.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    seen: sp.csr_matrix

    def __init__(self) -> None:
        self._user_index: dict[int, int] | None = None

    @property
    def user_index(self) -> dict[int, int]:
        """Map from dataset user id to row position."""
        if getattr(self, "_user_index", None) is None:
            self._user_index = {int(u): i for i, u in enumerate(self.user_ids)}
        assert self._user_index is not None
        return self._user_index

    def score_rows(self, rows: np.ndarray) -> np.ndarray:
        """Scores for the users at row positions ``rows``: ``len(rows) x len(item_ids)``."""
        raise NotImplementedError

    def score(
        self, user_ids: Sequence[int] | np.ndarray, *, exclude_seen: bool = False
    ) -> np.ndarray:
        """Dense scores over ``item_ids`` for each user (zeros for unknown users).

        Parameters
        ----------
        user_ids : sequence of int
            Dataset user ids.
        exclude_seen : bool
            Set the scores of the user's training items to ``-inf``.

        Returns
        -------
        np.ndarray
            ``len(user_ids) x len(item_ids)`` float array.
        """
        index = self.user_index
        rows = np.array([index.get(int(u), -1) for u in user_ids], dtype=np.int64)
        out = np.zeros((len(rows), len(self.item_ids)), dtype=np.float64)
        known = rows >= 0
        if known.any():
            out[known] = self.score_rows(rows[known])
            if exclude_seen:
                seen = self.seen[rows[known]].tocoo()
                block = out[known]
                block[seen.row, seen.col] = -np.inf
                out[known] = block
        return out

    def recommend(
        self,
        user_ids: Sequence[int] | np.ndarray,
        k: int,
        *,
        exclude_seen: bool = True,
        batch_size: int = 512,
    ) -> pl.DataFrame:
        """Top ``k`` items per user.

        Parameters
        ----------
        user_ids : sequence of int
            Dataset user ids; users the model never saw get no rows.
        k : int
            Items per user.
        exclude_seen : bool
            Leave out the items the user has in the training interactions.
        batch_size : int
            Users scored at once (bounds memory).

        Returns
        -------
        pl.DataFrame
            ``user_id, item_id, score, rank`` with rank from 1.
        """
        ids = np.asarray([u for u in user_ids if int(u) in self.user_index], dtype=np.int64)
        frames = [
            top_k_frame(
                self.score(ids[s : s + batch_size], exclude_seen=exclude_seen),
                ids[s : s + batch_size],
                self.item_ids,
                k,
            )
            for s in range(0, len(ids), batch_size)
        ]
        if not frames:
            return top_k_frame(np.zeros((0, 0)), ids, self.item_ids, k)
        return pl.concat(frames)
