"""Job ``collab``: learn user and clip vectors from engagement and publish them for serving.

Reads engagement from the DuckDB event log (:func:`ranking.retrieval.engagement_from_events`),
fits weighted-ALS factors in torch (:func:`ranking.retrieval.collab.fit_collab`) and writes

- clip vectors to ``clip_vectors`` (space ``collab``, the source of truth for re-indexing) and
  to the vector index as the named vector ``collab`` (dot product) next to ``caption``;
- user vectors to ``user_vectors`` (migration 8), then into the engine's in-memory cache the
  :class:`~ranking.sources.collab.CollabSource` reads.

Run it with ``steerfeed jobs run collab``; the server's scheduler runs it every
``STEERFEED_COLLAB_EVERY_S`` seconds.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from pipelines.serving.jobs.runner import JobContext
from ranking.retrieval.collab import fit_collab
from ranking.retrieval.engagement import engagement_from_events
from ranking.retrieval.settings import COLLAB_SPACE, CollabSettings
from ranking.retrieval.user_vectors import put_user_vectors
from storage.index.base import VectorSpec

if TYPE_CHECKING:
    from pipelines.serving.engine import Engine

logger = logging.getLogger(__name__)

_UPSERT_BATCH = 2048


def fit_and_publish(engine: Engine, settings: CollabSettings | None = None) -> dict[str, Any]:
    """Fit the collab model from the engine's event log and publish its vectors.

    Parameters
    ----------
    engine : Engine
        The engine whose store, vector index and serving cache are written.
    settings : CollabSettings, optional
        Model settings (default: the engine's, else from the environment).

    Returns
    -------
    dict
        Counts for the job report: ``pairs, users, clips, indexed, dim, model_version``
        (``fitted: False`` and a ``reason`` when there is no engagement to learn from).
    """

    svc = engine.collab
    cfg = settings or svc.settings
    started = time.perf_counter()
    pairs = engagement_from_events(engine.store)
    # Only clips the catalogue knows can be served; users below the floor get no vector.
    known = np.fromiter(
        engine.state.catalogue.row_of.keys(),
        dtype=np.int64,
        count=len(engine.state.catalogue.row_of),
    )
    pairs = pairs.filter(pl.col("item_id").is_in(known))
    if cfg.min_user_items > 1:
        pairs = pairs.filter(pl.len().over("user_id") >= cfg.min_user_items)
    if pairs.height == 0:
        logger.info("collab job: no engagement yet; nothing fitted")
        return {"fitted": False, "reason": "no engagement in the event log", "pairs": 0}
    model = fit_collab(
        pairs,
        dim=cfg.dim,
        epochs=cfg.epochs,
        reg=cfg.reg,
        alpha=cfg.alpha,
        seed=cfg.seed,
        threads=cfg.threads,
    )
    version = "collab-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    engine.store.put_vectors(COLLAB_SPACE, model.item_ids, model.item_vectors)
    indexed = 0
    index = engine.index
    if index is not None:
        index.ensure({COLLAB_SPACE: VectorSpec(cfg.dim, "dot")})
        ids = model.item_ids.astype(np.int64)
        for s in range(0, len(ids), _UPSERT_BATCH):
            # Only the collab vector is given: the caption vector and payload are kept.
            index.upsert(
                ids[s : s + _UPSERT_BATCH],
                {COLLAB_SPACE: model.item_vectors[s : s + _UPSERT_BATCH]},
            )
        indexed = len(ids)
        index.optimize()
    else:
        logger.warning("collab job: vector index unavailable; clip vectors stored, not indexed")
    put_user_vectors(
        engine.store, COLLAB_SPACE, model.user_ids, model.user_vectors, model_version=version
    )
    svc.users.set({int(u): model.user_vectors[i] for i, u in enumerate(model.user_ids)})
    svc.model_version = version
    counts = {
        "fitted": True,
        "pairs": pairs.height,
        "users": len(model.user_ids),
        "clips": len(model.item_ids),
        "indexed": indexed,
        "dim": cfg.dim,
        "model_version": version,
        "ms": round(1000 * (time.perf_counter() - started)),
    }
    logger.info("collab job %s", counts)
    return counts


def run(ctx: JobContext) -> dict[str, Any]:
    """Fit the collab model and publish clip and user vectors (see :func:`fit_and_publish`)."""
    return fit_and_publish(ctx.engine)
