"""Install collaborative retrieval into an engine (``install(engine)``, called by the engine).

Adds to the engine:

- ``engine.collab``: :class:`CollabServices` (settings, the cache of learned user vectors read
  from ``user_vectors`` on first use, the serving model version);
- ``engine.deps.extra_sources``: :class:`~ranking.sources.collab.CollabSource` (dot-product
  search on the ``collab`` named vector with the user's learned vector), when the vector index
  is open. Until the ``collab`` job has run it returns nothing (fail open);
- ``engine.health_checks["collab"]``: how many users have a learned vector;
- the ``collab`` job (:mod:`pipelines.collab_job`) in the job registry.

Idempotent and cheap: nothing is read from the store until the first request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.plugins import installed
from ranking.retrieval.settings import COLLAB_SPACE, CollabSettings
from ranking.retrieval.user_vectors import UserVectorCache
from ranking.sources.collab import CollabSource
from storage.index.base import VectorSpec

if TYPE_CHECKING:
    from pipelines.engine import Engine

logger = logging.getLogger(__name__)

HEALTH_KEY = "collab"


@dataclass
class CollabServices:
    """Collaborative retrieval state of one engine (``engine.collab``)."""

    settings: CollabSettings
    users: UserVectorCache
    model_version: str | None = None

    def forget_user(self, user_id: int) -> None:
        """Drop an erased user's learned vector from memory (erasure calls this; the store's
        rows are erased with the user's other rows)."""
        self.users.forget(user_id)


def collab_of(engine: Engine) -> CollabServices:
    """The engine's collab services, installing them on first use."""
    svc: CollabServices = installed(engine, "collab", install)
    return svc


def install(engine: Engine) -> None:
    """Engine extension hook (``pipelines.engine.EXTENSIONS``)."""
    # The job registry's built-in list does not name this job; importing registers it.
    import pipelines.collab_job  # noqa: F401

    svc: CollabServices | None = getattr(engine, "collab", None)
    if svc is None:
        settings = CollabSettings()
        svc = CollabServices(settings=settings, users=UserVectorCache(engine.store, COLLAB_SPACE))
        engine.collab = svc  # type: ignore[attr-defined]
    # The collab job fills this space; a lost index is rebuilt with it from the store.
    engine.index_spaces.setdefault(COLLAB_SPACE, VectorSpec(svc.settings.dim, "dot"))
    deps = engine.deps
    if deps.index is not None and not any(isinstance(s, CollabSource) for s in deps.extra_sources):
        deps.extra_sources.append(
            CollabSource(
                deps.index,
                svc.users,
                space=COLLAB_SPACE,
                limit=svc.settings.limit,
                timeout_s=svc.settings.timeout_s,
            )
        )
    engine.health_checks[HEALTH_KEY] = lambda: _health(svc)
    engine.rebuild_products()
    logger.info("collab retrieval installed (index %s)", "on" if deps.index else "off")


def _health(svc: CollabServices) -> dict[str, Any]:
    return {"users_with_vectors": len(svc.users), "model_version": svc.model_version}
