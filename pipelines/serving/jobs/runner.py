"""Jobs: plain functions ``run(ctx) -> JobReport`` registered by name.

Runnable from the CLI (``steerfeed jobs run NAME``) and scheduled by APScheduler in the server
(the scheduler only wires).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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


JOBS: dict[str, JobSpec] = {}


def register(
    name: str, *, every_s: int | None = None, description: str = ""
) -> Callable[[JobFn], JobFn]:
    """Decorator: register ``fn`` as job ``name``."""

    def deco(fn: JobFn) -> JobFn:
        JOBS[name] = JobSpec(name, fn, every_s, description or (fn.__doc__ or "").strip())
        return fn

    return deco


def run_job(name: str, ctx: JobContext) -> JobReport:
    """Run one job by name and report; failures are logged and reported, not raised."""
    load_builtin_jobs()
    spec = JOBS.get(name)
    if spec is None:
        msg = f"unknown job {name!r}; valid: {', '.join(sorted(JOBS))}"
        raise JobError(msg)
    t0 = time.perf_counter()
    try:
        counts = spec.fn(ctx)
    except Exception as exc:
        logger.exception("job %s failed", name)
        return JobReport(name, False, time.perf_counter() - t0, {}, f"{type(exc).__name__}: {exc}")
    secs = time.perf_counter() - t0
    logger.info("job=%s ok seconds=%.2f counts=%s", name, secs, counts)
    _release_store_memory(ctx)
    return JobReport(name, True, secs, counts)


def _release_store_memory(ctx: JobContext) -> None:
    """Drop what a job's scans left in DuckDB's cache (the serving process keeps running)."""
    store = getattr(ctx.engine, "store", None)
    if store is not None:
        try:
            store.release_memory()
        except Exception:  # a cache that stays is no failure of the job
            logger.warning("could not release the store's cached blocks", exc_info=True)


def load_builtin_jobs() -> None:
    """Import the modules that register jobs (each optional)."""
    from pipelines.plugins import import_optional

    for mod in (
        "pipelines.serving.jobs.index",
        "pipelines.serving.jobs.train",
        "pipelines.serving.jobs.collab",
        "pipelines.serving.jobs.wellbeing",
        "pipelines.serving.jobs.generation",
    ):
        import_optional(mod)
