"""A background writer that batches events into the store (used for impression logging).

Events the API acknowledges are written synchronously (the ack follows the commit); this
writer is for the engine's own logs, where the response must not wait. What a crash may lose
is bounded: an event is committed at most ``max_wait_s`` after it was submitted (plus the time
of the write before it), whether or not more events keep coming.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import polars as pl

from storage.errors import StorageError
from storage.store import Store

logger = logging.getLogger(__name__)

# A queued item: (submitted at, frame); a frame of None asks for an immediate write (flush).
_Item = tuple[float, pl.DataFrame | None]


class BackgroundEventWriter:
    """Queues event frames and appends them in batches on a daemon thread.

    A batch is written when its oldest event has waited ``max_wait_s`` or it holds
    ``max_batch_rows`` rows, whichever comes first. (The wait is a deadline from the first
    event, not an idle gap: under steady traffic an idle gap never comes, and nothing was
    written until the row bound was reached.)

    Parameters
    ----------
    store
        Where events are committed.
    on_commit
        Called with each committed batch (e.g. to update in-memory counters).
    max_wait_s
        Longest time an event waits in the queue before its batch is written.
    max_batch_rows
        Most rows in one batch; a fuller queue is written in several batches.
    on_batch
        Called after each batch with its rows, how long its oldest row waited (seconds) and
        whether it was committed (metrics; it must be cheap and must not raise).
    """

    def __init__(
        self,
        store: Store,
        *,
        on_commit: Callable[[pl.DataFrame], None] | None = None,
        max_wait_s: float = 0.2,
        max_batch_rows: int = 20_000,
        on_batch: Callable[[int, float, bool], None] | None = None,
    ) -> None:
        if not 0 < max_wait_s <= 60:
            msg = f"max_wait_s={max_wait_s} (need 0 < max_wait_s <= 60 seconds)"
            raise StorageError(msg)
        if max_batch_rows < 1:
            msg = f"max_batch_rows={max_batch_rows} (need at least 1)"
            raise StorageError(msg)
        self.store = store
        self.on_commit = on_commit
        self.max_wait_s = max_wait_s
        self.max_batch_rows = max_batch_rows
        self.on_batch = on_batch
        self.last_lag_s: float | None = None  # the oldest row's wait in the last batch
        self._q: queue.Queue[_Item | None] = queue.Queue()
        self._cond = threading.Condition()
        self._pending = 0  # frames submitted and not yet written (or given up on)
        self.written = 0
        self.failed_batches = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._loop, name="event-writer", daemon=True)
        self._thread.start()

    def submit(self, events: pl.DataFrame) -> None:
        """Queue events for writing."""
        if events.height:
            with self._cond:
                self._pending += 1
            self._q.put((time.monotonic(), events))

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            submitted, first = item
            if first is None:  # a flush with nothing queued before it
                continue
            deadline = submitted + self.max_wait_s
            frames = [first]
            rows = first.height
            stop = False
            while rows < self.max_batch_rows:
                left = deadline - time.monotonic()
                try:
                    # Wait until the oldest event's deadline; past it, take only what is queued.
                    nxt = self._q.get(timeout=left) if left > 0 else self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if nxt[1] is None:
                    deadline = 0.0  # flush: write what is queued now
                    continue
                frames.append(nxt[1])
                rows += nxt[1].height
            self._write(pl.concat(frames, how="diagonal_relaxed"), len(frames), submitted)
            if stop:
                return

    def _write(self, batch: pl.DataFrame, n_frames: int, oldest: float) -> None:
        committed = False
        try:
            self.written += self.store.append_events(batch)
            committed = True
            self.last_lag_s = time.monotonic() - oldest
            self.last_error = None
            if self.on_commit is not None:
                self.on_commit(batch)
        except Exception as exc:
            self.failed_batches += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            logger.exception("event writer failed to write %d events", batch.height)
        finally:
            # Before waiters of flush() wake: what they read next includes this batch.
            if self.on_batch is not None:
                self.on_batch(batch.height, time.monotonic() - oldest, committed)
            with self._cond:
                self._pending -= n_frames
                self._cond.notify_all()

    def pending(self) -> int:
        """Frames submitted and not yet written."""
        with self._cond:
            return self._pending

    def stats(self) -> dict[str, Any]:
        """Counts for ``/healthz``: rows written, frames queued, failed batches."""
        return {
            "max_wait_s": self.max_wait_s,
            "written": self.written,
            "pending_frames": self.pending(),
            "failed_batches": self.failed_batches,
            "last_lag_s": None if self.last_lag_s is None else round(self.last_lag_s, 4),
            "last_error": self.last_error,
        }

    def flush(self, timeout: float = 10.0) -> None:
        """Write what is queued now and wait until everything submitted so far is written."""
        self._q.put((time.monotonic(), None))
        with self._cond:
            self._cond.wait_for(lambda: self._pending <= 0, timeout=timeout)

    def close(self) -> None:
        """Write what is queued and stop the thread."""
        self._q.put(None)
        self._thread.join(timeout=30)
