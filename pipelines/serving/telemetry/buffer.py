"""The page path's metric observations, logged in two flat arrays and replayed in batches.

A page records ~60 observations: the time of each stage and component, the candidates of each
source, the removals of each filter, and the page's own. Recorded one by one into
prometheus_client, each observation touches a child's value objects and their locks. A page's
work pushes those out of the CPU caches, so on a busy machine each observation cost ~3 us,
~160 us a page (docs/benchmarks.md). Logged here instead, a page appends its observations to
two arrays under one lock, and :meth:`MetricsBuffer.flush` replays them into their children
with the public ``observe``/``inc`` calls. The replay runs in a batch with warm caches, and off
the request thread (its CPU is still spent: the bench reports it per page).

Flushes happen before every scrape (:func:`~pipelines.serving.telemetry.metrics.render`),
``interval_s`` after a page at the latest (a daemon thread; with several workers this is
when a worker's observations reach the shared files), when a worker shuts down and when the
process exits. Nothing is estimated: every observation reaches Prometheus unchanged, at most
a second late; a process killed outright loses its last second of them.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from array import array
from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)

#: The longest an observation waits before it reaches its Prometheus child (without a scrape).
FLUSH_INTERVAL_S = 1.0
#: Observations held before a page flushes them itself (bounds memory if the flusher stalls).
MAX_PENDING = 1_000_000

Record = Callable[[float], None]


class MetricsBuffer:
    """Observations ``(slot, value)`` waiting to be replayed into their metric children.

    A slot is one labelled child's ``observe`` (histogram) or ``inc`` (counter), registered
    once by :meth:`slot`. :meth:`record` logs a page's observations; :meth:`flush` replays
    everything logged so far, in order.
    """

    def __init__(self, *, interval_s: float = FLUSH_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._lock = threading.Lock()  # guards the log and the slot table
        self._flushing = threading.Lock()  # one replay at a time
        self._records: list[Record] = []
        self._by_record: dict[Record, int] = {}
        self._slots = array("i")
        self._values = array("d")
        self._wake = threading.Event()
        self._flusher_started = False
        #: CPU time the replays took in total (the bench reports it per page).
        self.flush_cpu_s = 0.0
        # A forked worker starts with an empty log (its parent replays what it logged) and
        # starts its own flusher.
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._slots, self._values = array("i"), array("d")
        self._wake = threading.Event()
        self._flusher_started = False

    def slot(self, record: Record) -> int:
        """The slot of a child's ``observe`` or ``inc`` (registered the first time)."""
        with self._lock:
            k = self._by_record.get(record)
            if k is None:
                k = self._by_record[record] = len(self._records)
                self._records.append(record)
            return k

    def record(self, slots: Sequence[int], values: Sequence[float]) -> None:
        """Log observations: ``values[i]`` for ``slots[i]`` (the same length)."""
        with self._lock:
            self._slots.extend(slots)
            self._values.extend(values)
            pending = len(self._slots)
        if pending > MAX_PENDING:
            self.flush()
        elif not self._wake.is_set():
            self._start_flusher()
            self._wake.set()

    def flush(self) -> None:
        """Replay every logged observation into its child."""
        with self._flushing:
            t = time.thread_time()
            with self._lock:
                slots, values = self._slots, self._values
                self._slots, self._values = array("i"), array("d")
                records = list(self._records)
            for k, v in zip(slots, values, strict=True):
                records[k](v)
            self.flush_cpu_s += time.thread_time() - t

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher_started:
                return
            self._flusher_started = True
        threading.Thread(target=self._run, name="metrics-flush", daemon=True).start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(self.interval_s)
            self._wake.clear()  # before the replay: a page logged during it wakes us again
            try:
                self.flush()
            except Exception:  # a child that raises must not stop the flusher for good
                logger.exception("metrics flush failed")


#: The process's buffer (metrics are process-wide, as prometheus_client's registry is).
BUFFER = MetricsBuffer()
# A process that exits normally replays what it logged (a server also flushes at shutdown).
atexit.register(BUFFER.flush)
