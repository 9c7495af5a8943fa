"""APScheduler wiring: runs the job table's periodic jobs in the server; a crashed job is logged
and retried.

Every worker of a deployment runs a scheduler; a periodic job runs only in the worker holding
its lease in the store (:mod:`storage.leases`), so it runs once per deployment per interval.
The lease lasts one and a half intervals and the holder renews it each time it runs the job; if
the holder dies, another worker takes the job once the lease expires. ``steerfeed jobs run``
runs a job by hand without a lease."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from apscheduler.schedulers.background import BackgroundScheduler

from pipelines.serving.engine import Engine
from pipelines.serving.jobs import JobContext, JobSpec, job_table, run_job
from storage.leases import acquire, worker_id

logger = logging.getLogger(__name__)

RETRY_DELAYS_S = (5, 30, 120)


#: A lease lasts this many intervals of its job (renewed at each run by its holder).
LEASE_INTERVALS = 1.5


def start_scheduler(
    engine: Engine,
    *,
    jobs: list[str] | None = None,
    table: Mapping[str, JobSpec] | None = None,
    holder: str | None = None,
) -> BackgroundScheduler:
    """Start a background scheduler with every periodic job of ``table`` (default: the
    engine's job table), or the named ones; ``holder`` names this worker in the job leases
    (default: :func:`storage.leases.worker_id`)."""
    specs = table if table is not None else job_table(engine.settings)
    holder = holder or worker_id()
    sched = BackgroundScheduler(daemon=True)
    for spec in specs.values():
        if spec.every_s is None or (jobs is not None and spec.name not in jobs):
            continue
        sched.add_job(
            run_if_leased,
            "interval",
            seconds=spec.every_s,
            args=[engine, spec.name, specs, holder],
            id=spec.name,
            max_instances=1,
            coalesce=True,
        )
    sched.start()
    logger.info("scheduler started with %d jobs", len(sched.get_jobs()))
    return sched


def run_if_leased(engine: Engine, name: str, table: Mapping[str, JobSpec], holder: str) -> bool:
    """Run the periodic job ``name`` if this worker holds (or takes) its lease; ``False``
    when another worker holds it."""
    every = table[name].every_s or 60.0
    try:
        leased = acquire(engine.store, name, holder, LEASE_INTERVALS * every)
    except Exception:  # the store is down: the job would fail anyway; try at the next tick
        logger.warning("job %s skipped: its lease could not be taken", name, exc_info=True)
        return False
    if not leased:
        logger.debug("job %s runs in another worker", name)
        return False
    _run_with_retry(engine, name, table)
    return True


def _run_with_retry(
    engine: Engine, name: str, table: Mapping[str, JobSpec], attempt: int = 0
) -> None:
    report = run_job(name, JobContext(engine), table=table)
    if report.ok and attempt:  # a routine run logs at DEBUG; a recovery is news
        logger.info("job %s ok after %d retries (%.2f s)", name, attempt, report.seconds)
    if report.ok or attempt >= len(RETRY_DELAYS_S):
        if not report.ok:
            logger.error("job %s gave up after %d retries: %s", name, attempt, report.message)
        return
    delay = RETRY_DELAYS_S[attempt]
    logger.warning("job %s failed (%s); retry %d in %d s", name, report.message, attempt + 1, delay)
    t = threading.Timer(delay, _run_with_retry, args=(engine, name, table, attempt + 1))
    t.daemon = True
    t.start()
