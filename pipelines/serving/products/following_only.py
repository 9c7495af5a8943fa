"""The non-personalized feed: clips of creators the user follows, newest first.

No taste vector, no ANN, no engagement-based ranking: what parental controls and users who turn
personalization off get. Safety, blocks and the standing steering rules (``extra_filters``)
still apply. The steering wiring serves it instead of ``home`` when the user's settings say
``personalized: false``.
"""

from __future__ import annotations

from pipelines.serving.products.home import RankingDeps
from ranking.filters.already_seen import AlreadySeenFilter
from ranking.filters.blocked_authors import BlockedAuthorsFilter
from ranking.filters.safety import SafetyFilter
from ranking.filters.unknown_clip import UnknownClipFilter
from ranking.hydrators.clip_features import ClipFeaturesHydrator
from ranking.pipeline import RankingPipeline
from ranking.query_hydrators.user_context import UserContextQueryHydrator
from ranking.scorers.recency import RecencyScorer
from ranking.selectors.newest_first import NewestFirstSelector
from ranking.side_effects.log_impressions import LogImpressionsSideEffect
from ranking.sources.following import FollowingSource

FOLLOWING_ONLY = "following_only"


def build_following_only_feed(deps: RankingDeps) -> RankingPipeline:
    """Declare the following-only, newest-first pipeline."""
    return RankingPipeline(
        name=FOLLOWING_ONLY,
        query_hydrators=[UserContextQueryHydrator(deps.state), *deps.extra_query_hydrators],
        sources=[FollowingSource(deps.state, limit=500)],
        hydrators=[ClipFeaturesHydrator(deps.state)],
        # Cheapest first, as in the home feed.
        filters=[
            UnknownClipFilter(),
            AlreadySeenFilter(),
            BlockedAuthorsFilter(),
            SafetyFilter(),
            *deps.extra_filters,
        ],
        scorers=[RecencyScorer()],
        selector=NewestFirstSelector(),
        post_filters=list(deps.extra_post_filters),
        side_effects=[
            LogImpressionsSideEffect(
                deps.events, pipeline=FOLLOWING_ONLY, features=ClipFeaturesHydrator.FEATURES
            )
        ],
    )
