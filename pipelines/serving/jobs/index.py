"""Job: embed captions of clips that have no vector yet and index them."""

from __future__ import annotations

from typing import Any

from pipelines.serving.jobs.runner import JobContext


def run(ctx: JobContext) -> dict[str, Any]:
    """Embed and index every clip without a stored caption vector."""
    eng = ctx.engine
    todo = eng.store.query(
        "SELECT * FROM clips WHERE item_id NOT IN "
        "(SELECT item_id FROM clip_vectors WHERE space = 'caption') ORDER BY item_id"
    )
    n = eng.index_clips(todo, show_progress=bool(ctx.options.get("progress")))
    if n and eng.index is not None:
        eng.index.optimize()
    return {"indexed": n}
