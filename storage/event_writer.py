"""A background writer that batches events into the store (used for impression logging).

Events the API acknowledges are written synchronously (the ack follows the commit); this
writer is for the engine's own logs, where the response must not wait.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

import polars as pl

from storage.store import Store

logger = logging.getLogger(__name__)


class BackgroundEventWriter:
    """Queues event frames and appends them in batches on a daemon thread.

    Parameters
    ----------
    store
        Where events are committed.
    on_commit
        Called with each committed batch (e.g. to update in-memory counters).
    flush_interval_s
        Longest time an event waits in the queue.
    """

    def __init__(
        self,
        store: Store,
        *,
        on_commit: Callable[[pl.DataFrame], None] | None = None,
        flush_interval_s: float = 0.2,
        max_batch_rows: int = 20_000,
    ) -> None:
        self.store = store
        self.on_commit = on_commit
        self.flush_interval_s = flush_interval_s
        self.max_batch_rows = max_batch_rows
        self._q: queue.Queue[pl.DataFrame | None] = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._loop, name="event-writer", daemon=True)
        self._thread.start()
        self.written = 0

    def submit(self, events: pl.DataFrame) -> None:
        """Queue events for writing."""
        if events.height:
            self._idle.clear()
            self._q.put(events)

    def _loop(self) -> None:
        while True:
            first = self._q.get()
            if first is None:
                return
            frames = [first]
            rows = first.height
            stop = False
            while rows < self.max_batch_rows:
                try:
                    nxt = self._q.get(timeout=self.flush_interval_s)
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                frames.append(nxt)
                rows += nxt.height
            self._write(pl.concat(frames, how="diagonal_relaxed"))
            if self._q.empty():
                self._idle.set()
            if stop:
                return

    def _write(self, batch: pl.DataFrame) -> None:
        try:
            self.written += self.store.append_events(batch)
            if self.on_commit is not None:
                self.on_commit(batch)
        except Exception:
            logger.exception("event writer failed to write %d events", batch.height)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is written."""
        self._idle.wait(timeout)

    def close(self) -> None:
        """Write what is queued and stop the thread."""
        self._q.put(None)
        self._thread.join(timeout=30)
