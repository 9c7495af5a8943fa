"""Keep the vector index in step with the store, and say when it is not.

The store's ``clip_vectors`` are the source of truth; the index is rebuilt from them when its
storage is gone and topped up when it lacks clips (a lost folder, an upsert that failed while
the clip was committed). The engine runs :meth:`IndexReconciler.start` when it opens (the
comparison and any repair on a background thread, so the server answers meanwhile, degraded)
and the ``index`` job runs :meth:`IndexReconciler.run`. Until the index matches the store,
:meth:`IndexReconciler.degraded` says why, ``/healthz`` reports ``degraded`` and pages list the
index-backed sources in ``degraded_sources``.

With several workers over a shared store and an embedded index, each worker holds its own shard
or copy (:mod:`storage.index.edge_copies`) and takes writes only through its own requests and
jobs. Then ``sync_every_s`` is set: after the start-up run, every ``sync_every_s`` seconds the
reconciler reads a cheap fingerprint of the store
(:func:`~storage.index.reconcile.store_fingerprint`) and, when it changed, reconciles: clips
added through another worker are upserted, clips erased through another worker are deleted and
purged from the files, and a space re-fitted through another worker (a new ``model_version``)
has its changed vectors rewritten.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from storage.index.base import VectorIndex, VectorSpec
from storage.index.reconcile import (
    PayloadFn,
    find_gaps,
    refresh_space,
    repair,
    space_versions,
    store_fingerprint,
)
from storage.store import Store

logger = logging.getLogger(__name__)


class IndexReconciler:
    """Compares the index with the store and repairs it; reports its state.

    Parameters
    ----------
    store
        The store (``clips`` and ``clip_vectors``).
    index
        The engine's index, or ``None`` when it is unavailable (then nothing is done here:
        the engine reports the index as unavailable).
    spaces
        The spaces the index should hold (the engine's registry; extensions add theirs, so
        the dict is read at each run, not copied).
    payloads
        Index payloads of clip rows.
    ensure
        Creates the index's spaces and payload indexes (re-creates a lost shard in place).
    sync_every_s
        When set, keep following the store after the start-up run (several workers, each
        with its own index; see the module docstring); ``None``: one run at start and the
        ``index`` job's runs.
    """

    def __init__(
        self,
        store: Store,
        index: VectorIndex | None,
        spaces: dict[str, VectorSpec],
        *,
        payloads: PayloadFn,
        ensure: Callable[[VectorIndex], None],
        sync_every_s: float | None = None,
    ) -> None:
        self.store = store
        self.index = index
        self.spaces = spaces
        self.payloads = payloads
        self.ensure = ensure
        self._lock = threading.Lock()  # one reconcile at a time (start-up and the job)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = threading.Event()  # set when the start-up run has finished
        self._state: dict[str, Any] = {"state": "ok"}
        self._write_failures = 0
        self.last_report: dict[str, Any] | None = None
        self.sync_every_s = sync_every_s
        self._fingerprint: tuple[str, ...] | None = None
        self._versions: dict[str, str] = {}

    # -- state ----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The reconcile state for ``/healthz`` (``state``: ok, checking, repairing,
        rebuilding, behind or failed, with counts)."""
        out = dict(self._state)
        if self.last_report is not None:
            out["last_run"] = self.last_report
        return out

    def degraded(self) -> str | None:
        """Why the index does not serve what the store holds, or ``None``."""
        if self.index is None:
            return None  # unavailable: the engine says so itself
        problem = self.index.problem()
        if problem is not None:
            return problem
        state = self._state["state"]
        if state in ("ok", "checking"):
            return None
        return str(self._state.get("reason") or state)

    def note_write_failure(self, n: int, exc: BaseException) -> None:
        """Record clips committed to the store that the index did not take."""
        self._write_failures += 1
        self._state = {
            "state": "behind",
            "reason": f"{n} clips stored but not indexed ({type(exc).__name__}: {exc}); "
            "the index job adds them",
        }

    # -- runs -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Check cheaply now (a gone folder, fewer points than stored vectors: degraded from the
        first request), then compare and repair on a background thread."""
        index = self.index
        if index is None:
            return
        try:
            problem = index.problem()
            stored = int(
                self.store.scalar("SELECT count(*) FROM clip_vectors WHERE space = 'caption'")
            )
            points = index.count()
        except Exception as exc:
            logger.exception("vector index check at start failed")
            self._state = {"state": "failed", "reason": f"{type(exc).__name__}: {exc}"}
            return
        if problem is not None or points < stored:
            self._state = {
                "state": "rebuilding",
                "reason": problem
                or f"the index holds {points} points for {stored} stored caption vectors; "
                "restoring them from the store",
            }
        else:
            self._state = {"state": "checking"}
        self._thread = threading.Thread(
            target=self._run_quietly, name="index-reconcile", daemon=True
        )
        self._thread.start()

    def _run_quietly(self) -> None:
        try:
            self.run(reason="start")
        except Exception as exc:
            logger.exception("vector index reconcile at start failed")
            self._state = {"state": "failed", "reason": f"{type(exc).__name__}: {exc}"}
        finally:
            self._started.set()
        every = self.sync_every_s
        if every is None:
            return
        while not self._stop.wait(every):
            try:
                self.sync()
            except Exception as exc:
                logger.exception("vector index sync failed")
                self._state = {"state": "failed", "reason": f"{type(exc).__name__}: {exc}"}

    def sync(self) -> dict[str, Any] | None:
        """Reconcile when the store changed since the last run (its fingerprint or a space's
        model version) or the index's storage has a problem; ``None`` when nothing changed."""
        if self.index is None:
            return None
        if (
            self._fingerprint == store_fingerprint(self.store)
            and self._versions == space_versions(self.store)
            and self.index.problem() is None
        ):
            return None
        return self.run(reason="sync")

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the start-up reconcile; return whether it has finished (the thread goes on
        with the syncs when ``sync_every_s`` is set)."""
        if self._thread is None:
            return True
        return self._started.wait(timeout)

    def run(self, *, reason: str = "job") -> dict[str, Any]:
        """Re-create a lost index, then restore what it lacks from the store and drop points
        of clips the store no longer holds. Returns counts (``missing``, ``restored``,
        ``removed``, ``rebuilt``, ``seconds``)."""
        with self._lock:
            index = self.index
            if index is None:
                return {"skipped": "vector index unavailable"}
            t0 = time.perf_counter()
            failures = self._write_failures
            # Read before comparing: a change landing during this run shows at the next sync.
            fingerprint = store_fingerprint(self.store)
            versions = space_versions(self.store)
            rebuilt = False
            problem = index.problem()
            if problem is not None:
                logger.warning("vector index: %s; re-creating it from the store", problem)
                self._state = {"state": "rebuilding", "reason": problem}
                index.close()
                self.ensure(index)
                rebuilt = True
            gaps = find_gaps(self.store, index, self.spaces)
            out: dict[str, Any] = {
                "reason": reason,
                "rebuilt": rebuilt,
                "missing": {k: len(v) for k, v in gaps.missing.items()},
                "orphans": len(gaps.orphans),
            }
            if gaps.skipped:
                out["skipped"] = gaps.skipped
                logger.warning("vector index spaces not reconciled: %s", gaps.skipped)
            # Another worker's writes reaching this index are the sync's routine work, not a
            # fault: the index keeps serving as healthy meanwhile.
            routine = reason == "sync" and not rebuilt
            if not gaps.is_empty():
                total = gaps.n_missing
                if not rebuilt and not routine:
                    self._state = {
                        "state": "rebuilding"
                        if self._state["state"] == "rebuilding"
                        else "repairing",
                        "reason": f"{total} clip vectors missing from the index, "
                        f"{len(gaps.orphans)} points of removed clips; restoring from the store",
                    }
                if not routine:
                    self._state.update(missing=total, restored=0)
                logger.log(
                    logging.INFO if routine else logging.WARNING,
                    "vector index lacks %d stored vectors %s and holds %d orphan points; "
                    "repairing from the store",
                    total,
                    out["missing"],
                    len(gaps.orphans),
                )
                report = repair(
                    self.store,
                    index,
                    self.spaces,
                    gaps,
                    payloads=self.payloads,
                    stop=self._stop,
                    on_progress=None if routine else lambda k: self._state.update(restored=k),
                )
                out.update(restored=report["restored"], removed=report["removed"])
                if report["stopped"]:
                    out["stopped"] = True
                    return out
            refreshed = self._refresh_versions(index, versions) if self.sync_every_s else {}
            if refreshed:
                out["refreshed"] = refreshed
            if len(gaps.orphans):
                # Erased clips must leave the files too, not only the search results (the
                # worker that erased them purged its own index; this may be another's).
                index.purge()
            elif gaps.n_missing or any(refreshed.values()):
                index.optimize()
            self._fingerprint, self._versions = fingerprint, versions
            out["seconds"] = round(time.perf_counter() - t0, 2)
            if self._write_failures == failures:  # else an upsert failed meanwhile: stay behind
                self._state = {"state": "ok"}
            self.last_report = out
            logger.info("vector index reconcile %s", out)
            return out

    def _refresh_versions(self, index: VectorIndex, versions: dict[str, str]) -> dict[str, int]:
        """Rewrite the vectors of spaces whose model version changed since the last run."""
        out: dict[str, int] = {}
        for space, version in versions.items():
            spec = self.spaces.get(space)
            if spec is None or version == self._versions.get(space):
                continue
            if space not in index.spaces():
                continue  # nothing indexed yet: repair() adds the space's vectors
            out[space] = refresh_space(self.store, index, space, spec, stop=self._stop)
        return out

    def close(self) -> None:
        """Stop a running repair (between batches) and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
