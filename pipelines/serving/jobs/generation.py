"""Scheduled generation jobs: ``generate`` (the queue worker's tick) and ``generation_gaps``
(gap filling). Both are registered in :mod:`pipelines.serving.jobs.runner`; the server's APScheduler runs
them, ``steerfeed jobs run NAME`` runs one by hand (``generate`` then waits for the queue)."""

from __future__ import annotations

from typing import Any

from pipelines.generation.gaps import queue_gaps
from pipelines.generation.settings import GenerationSettings
from pipelines.generation.wiring import generation_of
from pipelines.serving.jobs.runner import JobContext, register

_DEFAULTS = GenerationSettings()


@register(
    "generate",
    every_s=_DEFAULTS.worker_every_s,
    description="render queued generation jobs (bounded concurrency, retries, timeouts)",
)
def run_worker(ctx: JobContext) -> dict[str, Any]:
    """Start queued jobs in free slots; with option ``wait`` (or ``progress``, which
    ``steerfeed jobs run`` sets) run until the queue is empty before returning."""
    svc = generation_of(ctx.engine)
    wait = bool(ctx.options.get("wait", ctx.options.get("progress", False)))
    timeout = ctx.options.get("timeout_s")
    return svc.worker.tick(wait=wait, timeout_s=float(timeout) if timeout else None)


@register(
    "generation_gaps",
    every_s=_DEFAULTS.gaps_every_s,
    description="queue prompts for mood facets and topics that lack good or fresh clips",
)
def run_gaps(ctx: JobContext) -> dict[str, Any]:
    """Find demand without supply and queue prompts."""
    limit = ctx.options.get("limit")
    return queue_gaps(generation_of(ctx.engine), limit=int(limit) if limit is not None else None)
