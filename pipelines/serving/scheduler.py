"""APScheduler wiring: runs the job table's periodic jobs in the server; a crashed job is logged
and retried."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from apscheduler.schedulers.background import BackgroundScheduler

from pipelines.serving.engine import Engine
from pipelines.serving.jobs import JobContext, JobSpec, job_table, run_job

logger = logging.getLogger(__name__)

RETRY_DELAYS_S = (5, 30, 120)


def start_scheduler(
    engine: Engine,
    *,
    jobs: list[str] | None = None,
    table: Mapping[str, JobSpec] | None = None,
) -> BackgroundScheduler:
    """Start a background scheduler with every periodic job of ``table`` (default: the
    engine's job table), or the named ones."""
    specs = table if table is not None else job_table(engine.settings)
    sched = BackgroundScheduler(daemon=True)
    for spec in specs.values():
        if spec.every_s is None or (jobs is not None and spec.name not in jobs):
            continue
        sched.add_job(
            _run_with_retry,
            "interval",
            seconds=spec.every_s,
            args=[engine, spec.name, specs],
            id=spec.name,
            max_instances=1,
            coalesce=True,
        )
    sched.start()
    logger.info("scheduler started with %d jobs", len(sched.get_jobs()))
    return sched


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
