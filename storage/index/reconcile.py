"""Reconcile the vector index with the store, the source of truth for clip vectors.

The store keeps every clip's vectors (``clip_vectors``); the index is a derived copy that can
be lost (its folder removed, a server's collection dropped) or fall behind (an upsert that
failed while the clip was committed). :func:`find_gaps` compares the two; :func:`repair`
upserts what the index lacks from the store's vectors and deletes points of clips the store
no longer holds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from storage.index.base import VectorIndex, VectorSpec
from storage.store import Store

logger = logging.getLogger(__name__)

#: Makes the index payloads of clip rows (the engine's ``clip_payloads``).
PayloadFn = Callable[[pl.DataFrame], list[dict[str, Any]]]


@dataclass
class IndexGaps:
    """What the index lacks against the store."""

    missing: dict[str, np.ndarray] = field(default_factory=dict)  # space -> clip ids
    orphans: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    skipped: dict[str, str] = field(default_factory=dict)  # space -> why it is not compared

    @property
    def n_missing(self) -> int:
        """Vectors the index lacks, over all spaces."""
        return sum(len(v) for v in self.missing.values())

    def is_empty(self) -> bool:
        """Whether the index holds exactly what the store says it should."""
        return self.n_missing == 0 and len(self.orphans) == 0


def find_gaps(store: Store, index: VectorIndex, spaces: dict[str, VectorSpec]) -> IndexGaps:
    """Compare the index with the store, space by space.

    Parameters
    ----------
    store
        The store holding ``clips`` and ``clip_vectors``.
    index
        The vector index to check.
    spaces
        The spaces the index should hold, with their size and distance. A space whose stored
        vectors have another size is skipped (and said so): its vectors need a re-created
        index, not a repair.
    """
    gaps = IndexGaps()
    for space, spec in spaces.items():
        ids = store.vector_ids(space)
        if not len(ids):
            continue
        have = index.spaces().get(space)
        if have is not None and have != spec:
            gaps.skipped[space] = f"index has {have}, expected {spec}"
            continue
        size = store.scalar("SELECT len(vector) FROM clip_vectors WHERE space = ? LIMIT 1", [space])
        if size != spec.size:
            gaps.skipped[space] = f"stored vectors have {size} dims, the space {spec.size}"
            continue
        missing = np.setdiff1d(ids, index.point_ids(space), assume_unique=True)
        if len(missing):
            gaps.missing[space] = missing
    clips = store.query("SELECT item_id FROM clips")["item_id"].to_numpy().astype(np.int64)
    gaps.orphans = np.setdiff1d(index.point_ids(), clips)
    return gaps


def repair(
    store: Store,
    index: VectorIndex,
    spaces: dict[str, VectorSpec],
    gaps: IndexGaps,
    *,
    payloads: PayloadFn,
    batch: int = 2048,
    stop: threading.Event | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Upsert the missing vectors from the store and delete orphan points.

    A point that does not exist yet gets its payload from the clip's row; a point that exists
    (missing only this space) keeps its payload and other vectors.
    ``stop`` ends the repair between batches (the engine closing); ``on_progress`` is called
    with the vectors restored so far.

    Returns
    -------
    dict
        ``restored`` (per space), ``removed`` (orphan points), ``seconds``, ``stopped``.
    """
    t0 = time.perf_counter()
    restored: dict[str, int] = {}
    done = 0
    if len(gaps.orphans):
        index.delete(gaps.orphans)
    for space, spec in spaces.items():
        ids = gaps.missing.get(space)
        if ids is None or not len(ids):
            continue
        if space not in index.spaces():
            index.ensure({space: spec})
        restored[space] = 0
        existing = index.point_ids()  # once per space: a full listing
        for start in range(0, len(ids), batch):
            if stop is not None and stop.is_set():
                return _report(restored, gaps, t0, stopped=True)
            got = store.get_vectors(space, ids[start : start + batch])
            if got is None:  # erased meanwhile
                continue
            part_ids, mat = got
            new_mask = ~np.isin(part_ids, existing)
            if new_mask.any():
                new_ids = part_ids[new_mask]
                rows = store.query(
                    "SELECT * FROM clips WHERE item_id IN (SELECT unnest(?::BIGINT[])) "
                    "ORDER BY item_id",
                    [new_ids.tolist()],
                )
                keep = np.isin(new_ids, rows["item_id"].to_numpy())  # erased meanwhile: skip
                index.upsert(new_ids[keep], {space: mat[new_mask][keep]}, payloads(rows))
                restored[space] += int(keep.sum())
            if (~new_mask).any():
                index.upsert(part_ids[~new_mask], {space: mat[~new_mask]})  # keep the payload
                restored[space] += int((~new_mask).sum())
            done += len(part_ids)
            if on_progress is not None:
                on_progress(done)
    return _report(restored, gaps, t0, stopped=False)


def _report(
    restored: dict[str, int], gaps: IndexGaps, t0: float, *, stopped: bool
) -> dict[str, Any]:
    return {
        "restored": restored,
        "removed": len(gaps.orphans),
        "skipped": gaps.skipped,
        "seconds": round(time.perf_counter() - t0, 2),
        "stopped": stopped,
    }


def store_fingerprint(store: Store) -> tuple[str, ...]:
    """A cheap summary of what the index should hold: clip and vector counts and id sums, and
    each space's model version (``user_vectors.model_version``, written after a space's clip
    vectors are replaced, as the collab job does). Another worker's added, erased or refreshed
    clips change it; one aggregate scan per table."""
    row = store.query(
        "SELECT (SELECT count(*) FROM clips) AS n_clips, "
        "(SELECT coalesce(sum(item_id), 0) FROM clips) AS sum_clips, "
        "(SELECT count(*) FROM clip_vectors) AS n_vectors, "
        "(SELECT coalesce(sum(item_id), 0) FROM clip_vectors) AS sum_vectors"
    ).row(0)
    return tuple(str(v) for v in row)


def space_versions(store: Store) -> dict[str, str]:
    """The newest model version of each space in ``user_vectors`` (spaces a job re-fits)."""
    df = store.query("SELECT space, max(model_version) AS version FROM user_vectors GROUP BY space")
    return {str(s): str(v) for s, v in df.iter_rows()}


def refresh_space(
    store: Store,
    index: VectorIndex,
    space: str,
    spec: VectorSpec,
    *,
    batch: int = 4096,
    stop: threading.Event | None = None,
) -> int:
    """Rewrite the ``space`` vectors of indexed points whose vector differs from the store's
    (a re-fitted model replaced them through another worker); returns how many were rewritten.

    Points keep their payload and other vectors; points the index lacks are :func:`repair`'s.
    """
    ids = store.vector_ids(space)
    rewritten = 0
    for start in range(0, len(ids), batch):
        if stop is not None and stop.is_set():
            break
        got = store.get_vectors(space, ids[start : start + batch])
        if got is None:
            continue
        part_ids, mat = got
        if spec.distance == "cosine":  # the index keeps unit vectors
            norms = np.linalg.norm(mat, axis=1, keepdims=True)
            mat = mat / np.where(norms > 0, norms, 1.0)
        have = index.get_vectors(space, part_ids)
        differ = [
            i
            for i, pid in enumerate(part_ids.tolist())
            if pid in have and not np.allclose(have[pid], mat[i], rtol=1e-4, atol=1e-5)
        ]
        if differ:
            rows = np.asarray(differ, dtype=np.int64)
            index.upsert(part_ids[rows], {space: mat[rows]})
            rewritten += len(differ)
    return rewritten
