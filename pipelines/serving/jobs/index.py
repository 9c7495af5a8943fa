"""Job: embed and index clips without a caption vector, then reconcile the index with the
store (re-create a lost index, restore vectors it lacks, drop points of removed clips)."""

from __future__ import annotations

from typing import Any

from pipelines.serving.jobs.runner import JobContext


def run(ctx: JobContext) -> dict[str, Any]:
    """Embed and index every clip without a stored caption vector, then reconcile."""
    eng = ctx.engine
    todo = eng.store.query(
        "SELECT * FROM clips WHERE item_id NOT IN "
        "(SELECT item_id FROM clip_vectors WHERE space = 'caption') ORDER BY item_id"
    )
    n = eng.index_clips(todo, show_progress=bool(ctx.options.get("progress")))
    if eng.index is None:
        return {"indexed": 0, "embedded": n, "index": f"unavailable: {eng.index_error}"}
    if n:
        eng.index.optimize()
    eng.index_reconciler.wait()  # the start-up run, when this engine was just opened
    rep = eng.index_reconciler.run(reason="job")
    restored = sum(rep.get("restored", {}).values())
    return {
        "indexed": n + restored,
        "embedded": n,
        "restored": restored,
        "removed": rep.get("removed", 0),
        "rebuilt": rep["rebuilt"],
    }
