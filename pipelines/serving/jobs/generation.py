"""Scheduled generation jobs: ``generate`` (the queue worker's tick) and ``generation_gaps``
(gap filling). Both are listed in :func:`pipelines.serving.jobs.job_table`; the server's
APScheduler runs them, ``steerfeed jobs run NAME`` runs one by hand (``generate`` then waits
for the queue)."""

from __future__ import annotations

from typing import Any

from pipelines.generation.gaps import queue_gaps
from pipelines.serving.jobs.runner import JobContext


def run_worker(ctx: JobContext) -> dict[str, Any]:
    """Start queued jobs in free slots; with option ``wait`` (or ``progress``, which
    ``steerfeed jobs run`` sets) run until the queue is empty before returning."""
    svc = ctx.engine.generation
    wait = bool(ctx.options.get("wait", ctx.options.get("progress", False)))
    timeout = ctx.options.get("timeout_s")
    return svc.worker.tick(wait=wait, timeout_s=float(timeout) if timeout else None)


def run_gaps(ctx: JobContext) -> dict[str, Any]:
    """Find demand without supply and queue prompts."""
    limit = ctx.options.get("limit")
    return queue_gaps(ctx.engine.generation, limit=int(limit) if limit is not None else None)
