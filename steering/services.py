"""Install steering into an engine: moods, standing controls, the mood source, filter and scorer.

The engine calls :func:`install` (``pipelines.serving.engine.EXTENSIONS``); it is idempotent and cheap
(nothing is embedded or scored until the first mood or rule). It adds to ``engine.deps``:

- query hydrator :class:`ActiveMoodQueryHydrator` (moods and standing controls of the request);
- candidate source :class:`MoodSource` (ANN and concept top clips for each mood facet);
- filter :class:`MoodExclusionsFilter` (negations, never-show, muted words and authors, "only");
- scorer :class:`MoodScorer` in ``extra_scorers`` (first of them, so later scorers such as the
  wellbeing taper see the steered score);

and registers ``engine.steering`` (:class:`SteeringServices`), the ``following_only`` product and
a product hook that serves it to users whose settings say ``personalized: false``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.serving.products.following_only import FOLLOWING_ONLY, build_following_only_feed
from ranking.state import FeedState
from steering.concepts import ConceptIndex
from steering.controls import ControlsService, controls_from_settings
from steering.filters.mood_exclusions import MoodExclusionsFilter
from steering.moods import MoodService
from steering.query_hydrators.active_mood import ActiveMoodQueryHydrator
from steering.scorers.mood import MoodScorer
from steering.sources.mood import MoodSource

if TYPE_CHECKING:
    from pipelines.serving.engine import Engine

logger = logging.getLogger(__name__)


@dataclass
class SteeringServices:
    """The steering services of one engine (``engine.steering`` after installation)."""

    concepts: ConceptIndex
    moods: MoodService
    controls: ControlsService


def is_personalized(state: FeedState, user_id: int) -> bool:
    """Whether the user wants the personalized feed (``settings.personalized``, default true)."""
    profile = state.profiles.get(user_id) or {}
    return controls_from_settings(profile.get("settings")).personalized


def install_steering(engine: Engine) -> SteeringServices:
    """Add the steering components to ``engine.deps``, rebuild the products and gate ``home``.

    Returns the services (also stored as ``engine.steering``).
    """
    existing: SteeringServices | None = getattr(engine, "steering", None)
    if existing is None:
        concepts = ConceptIndex(engine.state, lambda: engine.embedder)
        existing = SteeringServices(
            concepts=concepts,
            moods=MoodService(
                engine.store, engine.state, lambda: engine.embedder, concepts=concepts
            ),
            controls=ControlsService(engine.store, engine.state),
        )
        engine.steering = existing  # type: ignore[attr-defined]
    deps = engine.deps
    s = existing
    if not any(isinstance(q, ActiveMoodQueryHydrator) for q in deps.extra_query_hydrators):
        deps.extra_query_hydrators.append(ActiveMoodQueryHydrator(s.moods, s.controls, s.concepts))
    if not any(isinstance(x, MoodSource) for x in deps.extra_sources):
        deps.extra_sources.append(MoodSource(deps.index, deps.state))
    if not any(isinstance(f, MoodExclusionsFilter) for f in deps.extra_filters):
        deps.extra_filters.append(MoodExclusionsFilter(deps.state, concepts=s.concepts))
    # The base scorer list belongs to the learned ranker; the mood blend is an extra scorer.
    if deps.scorers is not None:
        deps.scorers[:] = [x for x in deps.scorers if not isinstance(x, MoodScorer)]
    if not any(isinstance(x, MoodScorer) for x in deps.extra_scorers):
        deps.extra_scorers.insert(0, MoodScorer())
    engine.health_checks["steering"] = lambda: {"concept_catalogue": s.concepts.status()}
    engine.rebuild_products()
    add_following_only(engine)
    logger.info("steering installed")
    return existing


def add_following_only(engine: Engine) -> None:
    """Register the ``following_only`` product and the hook that serves it instead of ``home``
    to users whose settings say ``personalized: false``."""
    engine.products[FOLLOWING_ONLY] = build_following_only_feed(engine.deps)
    hooks: list[Any] = getattr(engine, "product_hooks", [])
    if any(getattr(h, "__name__", "") == "_non_personalized_hook" for h in hooks):
        return
    state = engine.state

    def _non_personalized_hook(user_id: int, requested: str) -> str:
        if requested == "home" and not is_personalized(state, user_id):
            return FOLLOWING_ONLY
        return requested

    hooks.append(_non_personalized_hook)


def steering_of(engine: Engine) -> SteeringServices:
    """The engine's steering services, installing steering on first use."""
    existing: SteeringServices | None = getattr(engine, "steering", None)
    return existing if existing is not None else install_steering(engine)


def install(engine: Engine) -> None:
    """Engine extension hook (``pipelines.serving.engine.EXTENSIONS``): :func:`install_steering`."""
    install_steering(engine)
