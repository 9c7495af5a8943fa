"""Wires the learned ranker into an engine (``install(engine)``, called by the engine).

- ``engine.learned``: :class:`~ranking.learned.serving.LearnedModels` over
  ``<data_dir>/models`` (nothing is loaded here; the first request loads the model and, if the
  ``author_stats`` job has not run yet, computes the author statistics the model reads);
- ``engine.health_checks["learned_ranker"]``: which model serves, ``degraded`` when the promoted
  model's files are missing or corrupt and the hand-weighted scorer serves instead;
- ``engine.deps.scorers``: the :class:`~ranking.scorers.lightgbm_scorer.LightGbmScorer` in place
  of the hand-weighted scorer, **only** when a promoted model exists (otherwise the base list is
  left alone and the hand-weighted scorer serves);
- ``engine.deps.extra_post_filters``: the explanation stage that writes "why am I seeing this"
  from the model's feature contributions.

:func:`refresh` re-reads the registry after a promotion or rollback and rebuilds the products
(the train job calls it).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ranking.learned.registry import ModelRegistry
from ranking.learned.serving import LearnedModels, LearnedServingSettings
from ranking.post_hydrators.learned_explanations import LearnedExplanationsPostFilter
from ranking.scorers.hand_weighted import HandWeightedScorer
from ranking.scorers.lightgbm_scorer import LightGbmScorer

if TYPE_CHECKING:
    from pipelines.serving.engine import Engine

logger = logging.getLogger(__name__)

HEALTH_KEY = "learned_ranker"


def models_dir(data_dir: Path) -> Path:
    """The model registry folder of a data directory."""
    return Path(data_dir) / "models"


def learned_of(engine: Engine) -> LearnedModels:
    """The engine's learned models (installing them when absent)."""
    models = getattr(engine, "learned", None)
    if not isinstance(models, LearnedModels):
        settings = LearnedServingSettings()
        models = LearnedModels(
            ModelRegistry(models_dir(engine.data_dir)), check_every_s=settings.check_every_s
        )
        models.settings = settings
        models.on_first_load = lambda: _warm_author_stats(engine)
        engine.learned = models  # type: ignore[attr-defined]
    return models


def _warm_author_stats(engine: Engine) -> None:
    """Compute the author statistics once if the ``author_stats`` job has not run yet."""
    if engine.state.author_stats_computed_at() is None:
        from pipelines.serving.jobs.train import refresh_author_stats

        n = refresh_author_stats(engine)
        logger.info("author statistics computed for %d authors before first learned page", n)


def install(engine: Engine) -> None:
    """Register the learned models, their health check, the scorer and the explanations."""
    models = learned_of(engine)
    engine.health_checks[HEALTH_KEY] = models.health
    deps = engine.deps
    if not any(isinstance(f, LearnedExplanationsPostFilter) for f in deps.extra_post_filters):
        deps.extra_post_filters.append(
            LearnedExplanationsPostFilter(models, top_k=models.settings.explain_top_k)
        )
    _install_scorer(engine, models)


def _install_scorer(engine: Engine, models: LearnedModels) -> bool:
    """Put the learned scorer in the base scorer list when a model is promoted.

    Returns True when the scorer list changed.
    """
    if models.serving_version() is None:
        return False
    deps = engine.deps
    if deps.scorers is not None and any(isinstance(s, LightGbmScorer) for s in deps.scorers):
        return False
    scorer = LightGbmScorer(
        models,
        fallback=HandWeightedScorer(deps.hand_weights),
        heavy_top_k=models.settings.heavy_top_k,
    )
    if deps.scorers is None:
        deps.scorers = [scorer]
    else:
        # Later installers (steering) may have added scorers after the hand-weighted base.
        rest = [s for s in deps.scorers if not isinstance(s, HandWeightedScorer)]
        deps.scorers = [scorer, *rest]
    logger.info("learned ranker installed (serving %s)", models.serving_version())
    return True


def refresh(engine: Engine) -> None:
    """Re-read the registry (after a promotion or rollback) and rebuild the products."""
    models = learned_of(engine)
    models.invalidate()
    if _install_scorer(engine, models):
        engine.rebuild_products()
