"""The queue worker: renders claimed jobs on a small thread pool with bounded concurrency,
retries with back-off and per-attempt timeouts.

APScheduler calls :meth:`GenerationWorker.tick` every few seconds (job ``generate``); a tick
only claims as many jobs as there are free slots and returns at once, so rendering never runs
on a request thread and a failing or slow generator never slows or breaks a feed. A timed-out
attempt is marked failed (and retried); its thread cannot be killed, so it keeps its slot until
it ends and its late result is discarded.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.generation.errors import ModelUnavailableError, RuleViolation, StaleAttemptError
from storage.fence import UserErasedError

if TYPE_CHECKING:
    from pipelines.generation.queue import GenerationJob
    from pipelines.generation.service import GenerationService

logger = logging.getLogger(__name__)


@dataclass
class _InFlight:
    job: GenerationJob
    future: Future[None]
    started: float
    timed_out: bool = False


class GenerationWorker:
    """Runs queued generation jobs.

    Parameters
    ----------
    service
        The generation service (queue, rules, generator).
    """

    def __init__(self, service: GenerationService) -> None:
        self.service = service
        self.settings = service.settings
        self._pool = ThreadPoolExecutor(
            max_workers=self.settings.max_concurrency, thread_name_prefix="generate"
        )
        self._lock = threading.Lock()
        self._in_flight: dict[str, _InFlight] = {}
        self.stats = {"done": 0, "failed": 0, "retried": 0, "timed_out": 0, "refused": 0}

    def _attempt(self, job: GenerationJob) -> None:
        q = self.service.queue
        started = time.monotonic()

        def still_ours() -> bool:
            now = q.get(job.job_id)
            return now.status == "running" and now.attempts == job.attempts

        def is_current() -> bool:
            # An attempt that overran its timeout never commits its clip, even when it ends
            # before the reaper next looks.
            return time.monotonic() - started <= self.settings.timeout_s and still_ours()

        # The render is in-flight work of the people it names: an erasure of one of them waits
        # for it (storage/fence.py), and a job naming an erased user does not start.
        fence = self.service.engine.fence
        try:
            with fence.hold([job.requested_by, *job.cameo_user_ids]):
                item_id = self.service.render_job(job, is_current=is_current)
        except UserErasedError:
            q.cancel([job.job_id], "a user it names was erased")
            logger.info("generation job %s cancelled: a user it names was erased", job.job_id)
            return
        except StaleAttemptError as exc:
            if still_ours():  # overran, and the reaper has not failed it yet
                self._fail_timed_out(job.job_id)
            logger.warning("%s; its clip was discarded", exc)
            return
        except RuleViolation as exc:
            q.fail(job.job_id, f"{exc.reason}: {exc.message}", backoff_s=0, retry=False)
            self._count("refused")
            return
        except ModelUnavailableError as exc:
            status = q.fail(job.job_id, str(exc), backoff_s=self.settings.retry_backoff_s)
            self._count("failed" if status == "failed" else "retried")
            return
        except Exception as exc:
            logger.exception("generation job %s failed", job.job_id)
            status = q.fail(
                job.job_id, f"{type(exc).__name__}: {exc}", backoff_s=self.settings.retry_backoff_s
            )
            self._count("failed" if status == "failed" else "retried")
            return
        q.complete(job.job_id, item_id)
        self._count("done")

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    def _reap(self) -> int:
        """Forget finished attempts; fail attempts past the timeout. Returns busy slots."""
        now = time.monotonic()
        with self._lock:
            for job_id, f in list(self._in_flight.items()):
                if f.future.done():
                    del self._in_flight[job_id]
                elif not f.timed_out and now - f.started > self.settings.timeout_s:
                    f.timed_out = True
                    self._fail_timed_out(job_id, locked=True)
            return len(self._in_flight)

    def _fail_timed_out(self, job_id: str, *, locked: bool = False) -> None:
        """Fail an attempt that overran (once: the reaper and the attempt itself may race)."""
        if locked:
            self.stats["timed_out"] += 1
        else:
            with self._lock:
                f = self._in_flight.get(job_id)
                if f is not None and f.timed_out:
                    return
                if f is not None:
                    f.timed_out = True
                self.stats["timed_out"] += 1
        self.service.queue.fail(
            job_id,
            f"timed out after {self.settings.timeout_s:g} s",
            backoff_s=self.settings.retry_backoff_s,
        )

    def _recover_stale(self) -> int:
        """Jobs left ``running`` by a process that died (not ours): back to the queue."""
        with self._lock:
            mine = set(self._in_flight)
        n = 0
        for job_id in self.service.queue.stale(self.settings.timeout_s):
            if job_id not in mine:
                self.service.queue.fail(job_id, "interrupted (worker stopped)", backoff_s=0.0)
                n += 1
        return n

    def tick(self, *, wait: bool = False, timeout_s: float | None = None) -> dict[str, Any]:
        """Claim as many jobs as there are free slots and start them.

        Parameters
        ----------
        wait
            Keep claiming and wait until no runnable job is left (CLI and tests).
        timeout_s
            With ``wait``: stop waiting after this long.
        """
        t0 = time.monotonic()
        recovered = self._recover_stale()
        started = 0
        while True:
            busy = self._reap()
            free = self.settings.max_concurrency - busy
            jobs = self.service.queue.claim(free) if free > 0 else []
            for job in jobs:
                fut = self._pool.submit(self._attempt, job)
                with self._lock:
                    self._in_flight[job.job_id] = _InFlight(job, fut, time.monotonic())
                started += 1
            if not wait:
                break
            with self._lock:
                pending = [f.future for f in self._in_flight.values()]
            if not pending and not jobs:
                break
            left = None if timeout_s is None else timeout_s - (time.monotonic() - t0)
            if left is not None and left <= 0:
                break
            wait_futures(pending, timeout=min(left, 1.0) if left is not None else 1.0)
        with self._lock:
            in_flight = len(self._in_flight)
            stats = dict(self.stats)
        return {"started": started, "in_flight": in_flight, "recovered": recovered, **stats}

    def shutdown(self) -> None:
        """Stop taking work (running attempts finish in the background)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
