"""Steering's services: the concept catalogue, moods and standing controls of one engine.

The engine builds them with :func:`build_steering` and keeps them as ``engine.steering``; the
home feed lists the steering components (:mod:`steering.query_hydrators.active_mood`,
:mod:`steering.sources.mood`, :mod:`steering.filters.mood_exclusions`,
:mod:`steering.scorers.mood`). Cheap: nothing is embedded or scored until the first mood or rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from features.embedding import TextEmbedder
from ranking.state import FeedState
from steering.concepts import ConceptIndex
from steering.controls import ControlsService, controls_from_settings
from steering.goals import GoalService
from steering.moods import MoodService
from steering.rules import RuleService
from storage.store import Store


@dataclass
class SteeringServices:
    """The steering services of one engine (``engine.steering``)."""

    concepts: ConceptIndex
    moods: MoodService
    controls: ControlsService
    rules: RuleService
    goals: GoalService

    def health(self) -> dict[str, Any]:
        """Health check: the concept catalogue's status."""
        return {"concept_catalogue": self.concepts.status()}


def build_steering(
    store: Store, state: FeedState, embedder: Callable[[], TextEmbedder]
) -> SteeringServices:
    """The steering services over a store and serving state (``embedder`` loads on first use)."""
    concepts = ConceptIndex(state, embedder)
    return SteeringServices(
        concepts=concepts,
        moods=MoodService(store, state, embedder, concepts=concepts),
        controls=ControlsService(store, state),
        rules=RuleService(store, state, concepts),
        goals=GoalService(store, state, concepts),
    )


def is_personalized(state: FeedState, user_id: int) -> bool:
    """Whether the user wants the personalized feed (``settings.personalized``, default true)."""
    profile = state.profiles.by_user.get(user_id) or {}
    return controls_from_settings(profile.get("settings")).personalized
