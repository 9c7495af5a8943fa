"""Learned user vectors in the DuckDB store (table ``user_vectors``, migration 8).

The collab job writes them; :class:`UserVectorCache` serves them from memory to the collab
candidate source and is reloaded when the job publishes a new model.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import polars as pl

from ranking.retrieval.errors import RetrievalError
from storage.store import Store

logger = logging.getLogger(__name__)


def put_user_vectors(
    store: Store,
    space: str,
    user_ids: np.ndarray,
    vectors: np.ndarray,
    *,
    model_version: str = "",
    replace_space: bool = True,
) -> int:
    """Write user vectors of one space (by default replacing every stored vector of it).

    Parameters
    ----------
    store : Store
        The DuckDB store.
    space : str
        Vector space name (``"collab"``).
    user_ids : np.ndarray
        One id per row of ``vectors``.
    vectors : np.ndarray
        ``len(user_ids) x dim`` float matrix.
    model_version : str
        Which fitted model the vectors come from.
    replace_space : bool
        Delete the space's other vectors first (users absent from the new model lose theirs,
        so a stale vector never outlives the model it belongs to).

    Returns
    -------
    int
        Rows written.
    """
    mat = np.asarray(vectors, dtype=np.float32)
    ids = np.asarray(user_ids, dtype=np.int64)
    if mat.ndim != 2 or mat.shape[0] != len(ids):
        msg = f"user vectors must be (len(user_ids), dim); got {mat.shape} for {len(ids)} ids"
        raise RetrievalError(msg)
    frame = pl.DataFrame(
        {
            "user_id": ids,
            "space": [space] * len(ids),
            "vector": pl.Series(mat).cast(pl.List(pl.Float32)),
            "model_version": [model_version] * len(ids),
        }
    )
    arrow = frame.to_arrow()
    with store.write() as cur:
        if replace_space:
            cur.execute("DELETE FROM user_vectors WHERE space = ?", [space])
        cur.register("_user_vectors", arrow)
        try:
            cur.execute("INSERT OR REPLACE INTO user_vectors BY NAME SELECT * FROM _user_vectors")
        finally:
            cur.unregister("_user_vectors")
    return len(ids)


def get_user_vectors(store: Store, space: str) -> dict[int, np.ndarray]:
    """Every stored user vector of ``space`` as ``{user_id: float32 vector}``."""
    frame = store.query("SELECT user_id, vector FROM user_vectors WHERE space = ?", [space])
    if frame.height == 0:
        return {}
    mat = np.asarray(frame["vector"].to_list(), dtype=np.float32)
    return {int(u): mat[i] for i, u in enumerate(frame["user_id"].to_list())}


class UserVectorCache:
    """In-memory user vectors of one space, loaded from the store on demand.

    Thread-safe: a reload swaps the whole mapping, readers never see a half-loaded one.

    Parameters
    ----------
    store : Store
        Where the vectors are read from.
    space : str
        The vector space (``"collab"``).
    """

    def __init__(self, store: Store, space: str) -> None:
        self.store = store
        self.space = space
        self._vectors: dict[int, np.ndarray] | None = None
        self._lock = threading.Lock()

    def reload(self) -> int:
        """Read the space's vectors from the store again; return how many there are."""
        vectors = get_user_vectors(self.store, self.space)
        with self._lock:
            self._vectors = vectors
        logger.info("user vectors space=%s loaded=%d", self.space, len(vectors))
        return len(vectors)

    def set(self, vectors: dict[int, np.ndarray]) -> None:
        """Replace the cached vectors (after the job wrote the same ones to the store)."""
        with self._lock:
            self._vectors = dict(vectors)

    def get(self, user_id: int) -> np.ndarray | None:
        """The user's vector, or ``None`` when the model has none for them."""
        vectors = self._vectors
        if vectors is None:
            self.reload()
            vectors = self._vectors
        return None if vectors is None else vectors.get(int(user_id))

    def forget(self, user_id: int) -> None:
        """Remove one user's vector from memory."""
        with self._lock:
            if self._vectors is not None:
                self._vectors.pop(int(user_id), None)

    def __len__(self) -> int:
        return 0 if self._vectors is None else len(self._vectors)
