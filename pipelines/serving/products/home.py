"""The home feed: the engine's main product, declared as one pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from features.registry import feature_names
from ranking.filters.already_seen import AlreadySeenFilter
from ranking.filters.blocked_authors import BlockedAuthorsFilter
from ranking.filters.safety import SafetyFilter
from ranking.filters.unknown_clip import UnknownClipFilter
from ranking.hydrators.clip_features import ClipFeaturesHydrator
from ranking.hydrators.learned_features import LearnedFeaturesHydrator
from ranking.pipeline import (
    CandidateHydrator,
    CandidateSource,
    Filter,
    QueryHydrator,
    RankingPipeline,
    Scorer,
    Selector,
    SideEffect,
)
from ranking.query_hydrators.user_context import UserContextQueryHydrator
from ranking.scorers.hand_weighted import HandWeightedScorer, HandWeights
from ranking.selectors.diverse_top_k import DiverseTopKSelector
from ranking.side_effects.log_impressions import EventSink, LogImpressionsSideEffect
from ranking.sources.ann_user_vector import AnnUserVectorSource
from ranking.sources.following import FollowingSource
from ranking.sources.fresh import FreshSource
from ranking.sources.friends_of_friends import FriendsOfFriendsSource
from ranking.sources.trending import TrendingSource
from ranking.state import FeedState
from storage.index.base import VectorIndex


@dataclass
class RankingDeps:
    """What the products are built from (passed in, never imported as globals).

    ``extra_*`` lists let other packages (steering, wellbeing, generation) add their
    components without this module importing them.
    """

    state: FeedState
    index: VectorIndex | None
    events: EventSink
    hand_weights: HandWeights = field(default_factory=HandWeights)
    max_per_author: int = 2
    extra_query_hydrators: list[QueryHydrator] = field(default_factory=list)
    extra_sources: list[CandidateSource] = field(default_factory=list)
    extra_filters: list[Filter] = field(default_factory=list)
    extra_hydrators: list[CandidateHydrator] = field(default_factory=list)
    scorers: list[Scorer] | None = None
    extra_scorers: list[Scorer] = field(default_factory=list)
    selector: Selector | None = None
    extra_post_filters: list[Filter] = field(default_factory=list)
    extra_side_effects: list[SideEffect] = field(default_factory=list)
    impression_features: tuple[str, ...] = ClipFeaturesHydrator.FEATURES
    options: dict[str, Any] = field(default_factory=dict)


def build_home_feed(deps: RankingDeps) -> RankingPipeline:
    """Declare the home feed pipeline.

    Other packages add their components through ``deps`` (see each package's ``wiring``):
    extra query hydrators, sources (first, so their labels win), hydrators, filters (after
    the core ones), scorers (after the base value model), a selector, post-selection filters
    and side effects.
    """
    sources: list[CandidateSource] = [
        FollowingSource(deps.state),
        FriendsOfFriendsSource(deps.state),
        TrendingSource(deps.state),
        FreshSource(deps.state),
    ]
    if deps.index is not None:
        sources.insert(1, AnnUserVectorSource(deps.index, deps.state))
    scorers = deps.scorers if deps.scorers is not None else [HandWeightedScorer(deps.hand_weights)]
    return RankingPipeline(
        name="home",
        query_hydrators=[UserContextQueryHydrator(deps.state), *deps.extra_query_hydrators],
        sources=[*deps.extra_sources, *sources],
        hydrators=[
            ClipFeaturesHydrator(deps.state),
            LearnedFeaturesHydrator(deps.state),
            *deps.extra_hydrators,
        ],
        # Cheapest first: id lookups, then set membership, then column predicates.
        filters=[
            UnknownClipFilter(),
            AlreadySeenFilter(),
            BlockedAuthorsFilter(),
            SafetyFilter(),
            *deps.extra_filters,
        ],
        scorers=[*scorers, *deps.extra_scorers],
        selector=deps.selector or DiverseTopKSelector(max_per_author=deps.max_per_author),
        post_filters=list(deps.extra_post_filters),
        side_effects=[
            LogImpressionsSideEffect(deps.events, pipeline="home", features=feature_names()),
            *deps.extra_side_effects,
        ],
    )
