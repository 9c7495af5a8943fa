"""How a job runs: its context, its spec and its report.

A job is a plain function ``fn(ctx) -> counts``; :func:`run_spec` runs one and reports (a
failure is logged and reported, not raised). The table of jobs (name -> schedule -> function)
is declared in one place, :func:`pipelines.serving.jobs.job_table`.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Status, StatusCode

from pipelines.serving.telemetry import bind_request_id, new_request_id, reset_request_id

if TYPE_CHECKING:
    from pipelines.serving.engine import Engine

logger = logging.getLogger(__name__)


class JobError(Exception):
    """A job that is unknown or failed."""


@dataclass
class JobContext:
    """What a job may use."""

    engine: Engine
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobReport:
    """What a job did, with counts and timing."""

    name: str
    ok: bool
    seconds: float
    counts: dict[str, Any] = field(default_factory=dict)
    message: str = ""


JobFn = Callable[[JobContext], dict[str, Any]]


@dataclass(frozen=True)
class JobSpec:
    """A registered job and how often the server runs it (seconds; None = on demand only)."""

    name: str
    fn: JobFn
    every_s: int | None
    description: str


def run_spec(spec: JobSpec, ctx: JobContext) -> JobReport:
    """Run one job and report; failures are logged and reported, not raised.

    The run gets its own request id (``job-<name>-<hex>``) for its log lines and span, and is
    counted in the job metrics. A routine run is logged at DEBUG (the scheduler runs some every
    minute); a failure at ERROR. Runs of one job on one engine take turns: one asked for by
    hand (``POST /v1/admin/jobs/{name}/run``) while the scheduler's runs waits for it to end.
    """
    name = spec.name
    run_id = f"job-{name}-{new_request_id()[:12]}"
    telemetry = ctx.engine.telemetry
    token = bind_request_id(run_id)
    try:
        with _job_lock(ctx.engine, name), telemetry.job_span(name, run_id) as span:
            report = _run(spec, ctx)
            if span is not None and not report.ok:
                span.set_status(Status(StatusCode.ERROR, report.message))
        telemetry.job_finished(name, ok=report.ok, seconds=report.seconds, finished_at=time.time())
        return report
    finally:
        reset_request_id(token)


_job_locks: weakref.WeakKeyDictionary[Any, dict[str, threading.Lock]] = weakref.WeakKeyDictionary()
_job_locks_guard = threading.Lock()


def _job_lock(engine: Any, name: str) -> threading.Lock:
    """The lock one job's runs on ``engine`` take turns on (forgotten with the engine)."""
    with _job_locks_guard:
        return _job_locks.setdefault(engine, {}).setdefault(name, threading.Lock())


def _run(spec: JobSpec, ctx: JobContext) -> JobReport:
    name = spec.name
    t0 = time.perf_counter()
    try:
        counts = spec.fn(ctx)
    except Exception as exc:
        logger.exception("job %s failed", name)
        return JobReport(name, False, time.perf_counter() - t0, {}, f"{type(exc).__name__}: {exc}")
    secs = time.perf_counter() - t0
    logger.debug("job=%s ok seconds=%.2f counts=%s", name, secs, counts)
    _release_store_memory(ctx)
    return JobReport(name, True, secs, counts)


def _release_store_memory(ctx: JobContext) -> None:
    """Drop what a job's scans left in DuckDB's cache (the serving process keeps running)."""
    try:
        ctx.engine.store.release_memory()
    except Exception:  # a cache that stays is no failure of the job
        logger.warning("could not release the store's cached blocks", exc_info=True)
