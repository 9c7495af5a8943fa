"""The catalogue: every clip the feed can serve, one row per clip, and its caption vectors.

Rows never move: a clip keeps its row for the life of the process (an erased clip's row stays,
emptied and marked violative), so the other parts key their per-clip arrays by the same rows.
Rebuilt from the store's ``clips`` table (and the cached caption vectors); updated by the write
path (:meth:`add_clips`, :meth:`set_vectors`), not by the event log.
"""

from __future__ import annotations

import threading
from collections import defaultdict

import numpy as np
import polars as pl

from ranking.state.frames import col, epoch_col, list_col
from storage.store import Store

SAFETY_CODES = {"safe": 0, "borderline": 1, "violative": 2}
# Rows of erased clips stay in the arrays (positions must not shift) but are made unservable:
# the safety filter drops "violative" rows and nothing else about them is left.
_REMOVED_SAFETY = SAFETY_CODES["violative"]


class Catalogue:
    """Clip attributes as row-aligned arrays, ``row_of`` and vectorised id -> row lookups.

    Parameters
    ----------
    lock
        The serving state's lock (shared by all parts, so a page reads one consistent state).
    dim
        Dimension of caption embeddings.
    """

    def __init__(self, lock: threading.RLock, *, dim: int = 384) -> None:
        self.lock = lock
        self.dim = dim
        self.item_ids = np.zeros(0, dtype=np.int64)
        self.row_of: dict[int, int] = {}
        # Sorted ids and their rows: vectorised id -> row lookups on the request path.
        self._sorted_ids = np.zeros(0, dtype=np.int64)
        self._sorted_rows = np.zeros(0, dtype=np.int64)
        self.author = np.zeros(0, dtype=np.int64)
        self.created = np.zeros(0, dtype=np.float64)
        self.maturity = np.zeros(0, dtype=np.int8)
        self.safety = np.zeros(0, dtype=np.int8)
        self.generated = np.zeros(0, dtype=bool)
        self.duration = np.zeros(0, dtype=np.float32)
        self.remix_of = np.zeros(0, dtype=np.int64)
        self.captions: list[str] = []
        self.topics: list[list[str]] = []
        # First topic of each clip as an object array: gathered per page without a Python loop.
        self.primary_topic = np.zeros(0, dtype=object)
        self.hashtags: list[list[str]] = []
        self._strings: dict[str, str] = {}  # interned captions, topics and tags
        self.cameos: list[list[int]] = []
        self.vectors = np.zeros((0, dim), dtype=np.float32)
        self.has_vector = np.zeros(0, dtype=bool)
        self.by_author: dict[int, list[int]] = defaultdict(list)
        self._fresh_cache: tuple[int, np.ndarray] = (-1, np.zeros(0, dtype=np.int64))
        self._generated_rows: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.item_ids)

    def load(self, store: Store, *, vectors: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Add the store's clips (in id order) and the cached caption vectors
        ``(item_ids, matrix)``; on an empty catalogue this rebuilds it."""
        self.add_clips(store.query("SELECT * FROM clips ORDER BY item_id"))
        if vectors is not None:
            self.set_vectors(*vectors)

    def add_clips(self, clips: pl.DataFrame) -> pl.DataFrame:
        """Append clips (rows already known are replaced in place); return the new clips, in
        the order of the rows they were given."""
        if clips.height == 0:
            return clips
        with self.lock:
            new = clips.filter(~pl.col("item_id").is_in(list(self.row_of)))
            old = clips.filter(pl.col("item_id").is_in(list(self.row_of)))
            if new.height:
                self._append(new)
            for row in old.iter_rows(named=True):
                r = self.row_of[int(row["item_id"])]
                if "safety_label" in row:
                    self.safety[r] = SAFETY_CODES.get(row["safety_label"], 0)
                if "maturity" in row:
                    self.maturity[r] = int(row["maturity"])
                if "caption" in row:
                    self.captions[r] = row["caption"]
            self._fresh_cache = (-1, self._fresh_cache[1])
            self._generated_rows = None
            return new

    def _append(self, new: pl.DataFrame) -> None:
        n0, k = len(self.item_ids), new.height
        ids = new["item_id"].to_numpy().astype(np.int64)
        self.item_ids = np.concatenate([self.item_ids, ids])
        for i, item in enumerate(ids.tolist()):
            self.row_of[item] = n0 + i
        order = np.argsort(self.item_ids, kind="stable")
        self._sorted_ids = self.item_ids[order]
        self._sorted_rows = order.astype(np.int64)
        self.author = np.concatenate([self.author, new["author_id"].to_numpy()])
        self.created = np.concatenate([self.created, epoch_col(new, "created_at")])
        self.maturity = np.concatenate([self.maturity, col(new, "maturity", 0).astype(np.int8)])
        safety = [SAFETY_CODES.get(s, 0) for s in list_col(new, "safety_label", "safe")]
        self.safety = np.concatenate([self.safety, np.asarray(safety, dtype=np.int8)])
        self.generated = np.concatenate(
            [self.generated, col(new, "is_generated", False).astype(bool)]
        )
        self.duration = np.concatenate(
            [self.duration, col(new, "duration_s", 15.0).astype(np.float32)]
        )
        remix = new["remix_of"].fill_null(-1) if "remix_of" in new.columns else None
        remix_np = remix.to_numpy().astype(np.int64) if remix is not None else np.full(k, -1)
        self.remix_of = np.concatenate([self.remix_of, remix_np])
        # One object per distinct string: a million clips share a few thousand captions and
        # tags (0.6 GB of copies at that size).
        pool = self._strings
        self.captions.extend(pool.setdefault(c, c) for c in new["caption"].to_list())
        new_topics = [[pool.setdefault(t, t) for t in ts] for ts in list_col(new, "topics", [])]
        self.topics.extend(new_topics)
        first = np.empty(k, dtype=object)
        first[:] = [t[0] if t else "" for t in new_topics]
        self.primary_topic = np.concatenate([self.primary_topic, first])
        self.hashtags.extend(
            [pool.setdefault(t, t) for t in ts] for ts in list_col(new, "hashtags", [])
        )
        self.cameos.extend([list(c or []) for c in list_col(new, "cameo_user_ids", [])])
        zeros = np.zeros((k, self.dim), dtype=np.float32)  # untouched pages cost no RAM
        self.vectors = zeros if n0 == 0 else np.concatenate([self.vectors, zeros])
        self.has_vector = np.concatenate([self.has_vector, np.zeros(k, dtype=bool)])
        for i, a in enumerate(self.author[n0:].tolist()):
            self.by_author[a].append(n0 + i)

    def set_vectors(self, item_ids: np.ndarray, matrix: np.ndarray) -> None:
        """Store caption vectors for clips (unknown ids are ignored).

        A float32 matrix with one row per clip in row order is taken over, not copied (at
        start-up that is the store's matrix: a copy would hold 1.5 GB twice at a million
        clips); the caller must not change it afterwards.
        """
        with self.lock:
            if matrix.shape[1] != self.dim:
                self.dim = matrix.shape[1]
                self.vectors = np.zeros((len(self.item_ids), self.dim), dtype=np.float32)
                self.has_vector[:] = False
            rows = self.rows(item_ids)
            ok = rows >= 0
            if (
                len(rows) == len(self.item_ids)
                and matrix.dtype == np.float32
                and matrix.flags.c_contiguous
                and np.array_equal(rows, np.arange(len(rows)))
            ):
                self.vectors = matrix
            else:
                self.vectors[rows[ok]] = matrix[ok]
            self.has_vector[rows[ok]] = True
            self._generated_rows = None

    def rows(self, item_ids: np.ndarray | list[int]) -> np.ndarray:
        """Row numbers of clip ids (-1 for unknown)."""
        ids = np.asarray(item_ids, dtype=np.int64)
        sorted_ids = self._sorted_ids
        if ids.size == 0 or sorted_ids.size == 0:
            return np.full(ids.shape, -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(sorted_ids, ids), sorted_ids.size - 1)
        return np.where(sorted_ids[pos] == ids, self._sorted_rows[pos], -1)

    def generated_rows(self) -> np.ndarray:
        """Rows of AI-generated clips that have a caption vector (cached until clips or vectors
        change: a page without a mood asks for them, and a scan is ~3 ms at 1M clips)."""
        with self.lock:
            if self._generated_rows is None:
                self._generated_rows = np.flatnonzero(self.generated & self.has_vector)
            return self._generated_rows

    def freshest(self, *, k: int = 500) -> np.ndarray:
        """Rows of the newest clips (cached until clips are added)."""
        n, rows = self._fresh_cache
        if n == len(self.created):
            return rows
        k = min(k, len(self.created))
        if k == 0:
            return np.zeros(0, dtype=np.int64)
        top = np.argpartition(-self.created, k - 1)[:k]
        top = top[np.argsort(-self.created[top])]
        self._fresh_cache = (len(self.created), top)
        return top

    def forget_user(self, user_id: int, *, item_ids: list[int]) -> np.ndarray:
        """Empty the rows of ``item_ids`` (the user's clips, the clips they appear in and their
        remixes, as the store's erasure found them) and drop the user's author index; return
        the emptied rows."""
        with self.lock:
            self.by_author.pop(user_id, None)
            return self.forget_clips(item_ids)

    def forget_clips(self, item_ids: list[int]) -> np.ndarray:
        """Empty the rows of ``item_ids`` (deleted from the store); return the emptied rows."""
        with self.lock:
            emptied: list[int] = []
            for item in item_ids:
                r = self.row_of.pop(item, None)
                if r is None:
                    continue
                emptied.append(r)
                self.safety[r] = _REMOVED_SAFETY
                self.captions[r] = ""
                self.topics[r] = []
                self.hashtags[r] = []
                self.cameos[r] = []
                self.vectors[r] = 0.0
                self.has_vector[r] = False
                for rows in self.by_author.values():
                    if r in rows:
                        rows.remove(r)
            if emptied:
                self._generated_rows = None
            return np.asarray(emptied, dtype=np.int64)
