"""The job table: every job's name, schedule and function, declared in one place.

A job is a plain function ``fn(ctx) -> counts`` over the engine's parts (its bodies are in
this package, one module per area; the domain work they call lives in its package). The
server's scheduler (:mod:`pipelines.serving.scheduler`) runs the periodic ones,
``steerfeed jobs run NAME`` runs one by hand.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipelines.serving.jobs import collab, generation, index, store, train, wellbeing
from pipelines.serving.jobs.runner import JobContext, JobError, JobReport, JobSpec, run_spec
from pipelines.serving.settings import SteerfeedSettings

__all__ = ["JobContext", "JobError", "JobReport", "JobSpec", "job_table", "run_job"]


def job_table(settings: SteerfeedSettings) -> dict[str, JobSpec]:
    """Every job, in the order ``steerfeed jobs list`` shows them (schedules from settings)."""
    specs = (
        JobSpec(
            "index",
            index.run,
            300,
            "embed clips without a caption vector; restore what the index lacks from the store",
        ),
        JobSpec(
            "author_stats",
            train.run_author_stats,
            900,
            "author follower growth, engagement rate and PageRank credibility",
        ),
        JobSpec(
            "train", train.run_train, 86_400, "train the learned ranker; promote it if it wins"
        ),
        JobSpec(
            "collab",
            collab.run,
            settings.collab.every_s,
            "learn user/clip vectors from engagement; index clip vectors as 'collab'",
        ),
        JobSpec(
            "satisfaction",
            wellbeing.run,
            6 * 3600,
            "log survey non-responses, fit response propensity and the satisfaction model, "
            "impute every session",
        ),
        JobSpec(
            "wellbeing_refresh",
            wellbeing.refresh,
            60,
            "re-read every user's governor usage (and, every half hour, weekly activity) in bulk",
        ),
        JobSpec(
            "transparency",
            wellbeing.publish_transparency,
            3600,
            "publish completed periods of the public transparency report (hash-chained log)",
        ),
        JobSpec(
            "generate",
            generation.run_worker,
            settings.generation.worker_every_s,
            "render queued generation jobs (bounded concurrency, retries, timeouts)",
        ),
        JobSpec(
            "generation_gaps",
            generation.run_gaps,
            settings.generation.gaps_every_s,
            "queue prompts for mood facets and topics that lack good or fresh clips",
        ),
        JobSpec(
            "prune_change_feed",
            store.prune_change_feed,
            3600,
            "delete the shared store's change-feed rows every worker has long read (PostgreSQL)",
        ),
    )
    return {s.name: s for s in specs}


def run_job(name: str, ctx: JobContext, *, table: Mapping[str, JobSpec] | None = None) -> JobReport:
    """Run one job by name (from ``table``, default the engine's job table) and report;
    failures are logged and reported, not raised.

    Raises
    ------
    JobError
        An unknown job name (the message lists the valid ones).
    """
    jobs = table if table is not None else job_table(ctx.engine.settings)
    spec = jobs.get(name)
    if spec is None:
        msg = f"unknown job {name!r}; valid: {', '.join(sorted(jobs))}"
        raise JobError(msg)
    return run_spec(spec, ctx)
