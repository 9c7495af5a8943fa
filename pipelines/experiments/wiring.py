"""Install experiments into an engine: arm assignment, exposure logging and exploration.

Adds to ``engine.deps``:

- a query hydrator, first of the extra ones: :class:`ExperimentArmsQueryHydrator` (the user's
  arms of the running experiments into ``query.context["experiments"]``, logged on every
  impression, and their settings into ``query.overrides`` for the other components);
- the selector: :class:`ExploringSelector` over :class:`InterleavingSelector` over the one in
  place (default :class:`~ranking.selectors.diverse_top_k.DiverseTopKSelector`), so each
  served slot logs a ``propensity`` and users in an interleaving experiment get team-draft
  interleaved pages (teams logged);

and registers ``engine.experiments`` (:class:`ExperimentRepository`) and an ``experiments``
health check. Idempotent and cheap: the store is read on the first request.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pipelines.experiments.query_hydrators.experiment_arms import ExperimentArmsQueryHydrator
from pipelines.experiments.repository import ExperimentRepository
from pipelines.experiments.selectors.exploring import ExploringSelector
from pipelines.experiments.selectors.interleaving import InterleavingSelector
from pipelines.experiments.settings import ExperimentSettings
from pipelines.plugins import installed
from ranking.selectors.diverse_top_k import DiverseTopKSelector

if TYPE_CHECKING:
    from pipelines.serving.engine import Engine

logger = logging.getLogger(__name__)


def experiments_of(engine: Engine) -> ExperimentRepository:
    """The engine's experiment repository, installing experiments on first use."""
    repo: ExperimentRepository = installed(engine, "experiments", install)
    return repo


def install(engine: Engine, *, settings: ExperimentSettings | None = None) -> None:
    """Engine extension hook (``pipelines.serving.engine.EXTENSIONS``)."""
    cfg = settings or ExperimentSettings()
    repo: ExperimentRepository | None = getattr(engine, "experiments", None)
    if repo is None:
        repo = ExperimentRepository(engine.store, cache_ttl_s=cfg.cache_ttl_s)
        engine.experiments = repo  # type: ignore[attr-defined]
    deps = engine.deps
    if not any(isinstance(q, ExperimentArmsQueryHydrator) for q in deps.extra_query_hydrators):
        # First: the governor, mood and survey hydrators read the arm's overrides.
        deps.extra_query_hydrators.insert(0, ExperimentArmsQueryHydrator(repo.running))
    if not isinstance(deps.selector, ExploringSelector):
        inner = deps.selector or DiverseTopKSelector(max_per_author=deps.max_per_author)
        # The interleaving selector re-runs the home pipeline's scorers, read per request.
        interleaving = InterleavingSelector(
            inner, running=repo.running, scorers=lambda: engine.products["home"].scorers
        )
        deps.selector = ExploringSelector(
            interleaving, rate=cfg.exploration_rate, pool_size=cfg.exploration_pool
        )
    engine.health_checks["experiments"] = lambda: _health(repo)
    engine.rebuild_products()
    _rebuild_following_only(engine)
    logger.info("experiments installed (exploration_rate=%.3f)", cfg.exploration_rate)


def _rebuild_following_only(engine: Engine) -> None:
    """The following-only product also carries the arms hydrator (exposure is logged there)."""
    from pipelines.serving.products.following_only import FOLLOWING_ONLY, build_following_only_feed

    if FOLLOWING_ONLY in engine.products:
        engine.products[FOLLOWING_ONLY] = build_following_only_feed(engine.deps)


def _health(repo: ExperimentRepository) -> dict[str, Any]:
    try:
        return {"running": [e.name for e in repo.running()]}
    except Exception as exc:  # reported, never raised, by a health check
        return {"degraded": True, "error": f"{type(exc).__name__}: {exc}"}
