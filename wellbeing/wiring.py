"""Install wellbeing into an engine: the governor, survey cards, the taper and satisfaction head.

Adds to ``engine.deps``:

- query hydrators: :class:`GovernorQueryHydrator` (server-side decision, ``governor`` on every
  page, ``stop_card`` at a limit) and :class:`SurveyCardQueryHydrator` (``survey`` card drawn by
  the sampling policy);
- a candidate hydrator: :class:`IntensityHydrator` (``intensity`` column);
- a filter: :class:`GovernorStopFilter` (no clips at a limit; first of the extra filters);
- scorers: :class:`GovernorTaperScorer` and :class:`SatisfactionHeadScorer`;
- a post-selection filter: :class:`GovernorPageFilter` (generated-clip cap, page counted);

and registers ``engine.wellbeing`` (:class:`~wellbeing.service.WellbeingServices`),
``engine.children_of`` (parent links, used by API access checks), an event listener that keeps
the usage tracker current, a product hook that serves the following-only feed when a parent
(or the user) turned personalization off, and a ``wellbeing`` health check. Idempotent. With
``warm_on_start`` (the default) every user's usage, overrides, survey history and weekly
activity are read in a few bulk scans here, so no user's first page queries the store.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pipelines.plugins import installed
from wellbeing.filters.governor_page import GovernorPageFilter
from wellbeing.filters.governor_stop import GovernorStopFilter
from wellbeing.hydrators.intensity import IntensityHydrator
from wellbeing.query_hydrators.governor import GovernorQueryHydrator
from wellbeing.query_hydrators.survey_card import SurveyCardQueryHydrator
from wellbeing.scorers.governor_taper import GovernorTaperScorer
from wellbeing.scorers.satisfaction_head import SatisfactionHeadScorer
from wellbeing.service import WellbeingServices, build_services

if TYPE_CHECKING:
    from pipelines.serving.engine import Engine

logger = logging.getLogger(__name__)

FOLLOWING_ONLY = "following_only"


def wellbeing_of(engine: Engine) -> WellbeingServices:
    """The engine's wellbeing services, installing them on first use."""
    svc: WellbeingServices = installed(engine, "wellbeing", install)
    return svc


def install(engine: Engine) -> None:
    """Engine extension hook (``pipelines.serving.engine.EXTENSIONS``)."""
    svc: WellbeingServices | None = getattr(engine, "wellbeing", None)
    if svc is None:
        svc = build_services(engine.store, engine.state)
        engine.wellbeing = svc  # type: ignore[attr-defined]
        if svc.settings.warm_on_start:
            svc.warm()
    deps = engine.deps
    if not any(isinstance(q, GovernorQueryHydrator) for q in deps.extra_query_hydrators):
        deps.extra_query_hydrators.append(GovernorQueryHydrator(svc.governor))
    if not any(isinstance(q, SurveyCardQueryHydrator) for q in deps.extra_query_hydrators):
        deps.extra_query_hydrators.append(SurveyCardQueryHydrator(svc.surveys))
    if not any(isinstance(h, IntensityHydrator) for h in deps.extra_hydrators):
        deps.extra_hydrators.append(IntensityHydrator(svc.intensity))
    if not any(isinstance(f, GovernorStopFilter) for f in deps.extra_filters):
        deps.extra_filters.insert(0, GovernorStopFilter())  # cheapest: no per-row work
    if not any(isinstance(s, GovernorTaperScorer) for s in deps.extra_scorers):
        deps.extra_scorers.append(GovernorTaperScorer(strength=svc.settings.governor_taper))
    if not any(isinstance(s, SatisfactionHeadScorer) for s in deps.extra_scorers):
        deps.extra_scorers.append(
            SatisfactionHeadScorer(svc.satisfaction, weight=svc.settings.satisfaction_weight)
        )
    if not any(isinstance(f, GovernorPageFilter) for f in deps.extra_post_filters):
        deps.extra_post_filters.append(GovernorPageFilter(svc.governor))

    listeners: list[Any] = getattr(engine, "event_listeners", [])
    if svc.governor.on_events not in listeners:
        listeners.append(svc.governor.on_events)
    engine.children_of = svc.children_of  # type: ignore[attr-defined]
    _add_personalization_hook(engine, svc)
    engine.health_checks["wellbeing"] = lambda: _health(svc)
    engine.rebuild_products()
    if FOLLOWING_ONLY in engine.products:
        from pipelines.serving.products.following_only import build_following_only_feed

        engine.products[FOLLOWING_ONLY] = build_following_only_feed(engine.deps)
    logger.info("wellbeing installed")


def _add_personalization_hook(engine: Engine, svc: WellbeingServices) -> None:
    hooks: list[Any] = engine.product_hooks
    if any(getattr(h, "__name__", "") == "_governor_personalization_hook" for h in hooks):
        return

    def _governor_personalization_hook(user_id: int, requested: str) -> str:
        if (
            requested == "home"
            and FOLLOWING_ONLY in engine.products
            and not svc.governor.settings_for(user_id).personalized
        ):
            return FOLLOWING_ONLY
        return requested

    hooks.append(_governor_personalization_hook)


def _health(svc: WellbeingServices) -> dict[str, Any]:
    model = svc.satisfaction.model
    return {"satisfaction_model": model.version if model is not None else None}
