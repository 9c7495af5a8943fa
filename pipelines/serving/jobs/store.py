"""Store upkeep jobs: the change feed's old rows (PostgreSQL)."""

from __future__ import annotations

from typing import Any

from pipelines.serving.jobs.runner import JobContext
from storage.log_follow import prune_changes


def prune_change_feed(ctx: JobContext) -> dict[str, Any]:
    """Delete change-feed rows older than ``follow.keep_changes_s`` (every worker read them
    long ago; one down longer reloads its state when it starts). Nothing to do on DuckDB."""
    engine = ctx.engine
    if engine.store.dialect != "postgres":
        return {"deleted": 0, "skipped": "the embedded store keeps no change feed"}
    keep = engine.settings.follow.keep_changes_s
    return {"deleted": prune_changes(engine.store, older_than_s=keep), "kept_s": keep}
