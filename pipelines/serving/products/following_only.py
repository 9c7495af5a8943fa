"""The non-personalized feed: clips of creators the user follows, newest first.

No taste vector, no ANN, no engagement-based ranking: what parental controls and users who turn
personalization off get (:func:`pipelines.serving.products.choice.choose_product`). Safety,
blocks, the time-limit governor, the standing steering rules and the generation rules still
apply; experiment exposure is logged here too.
"""

from __future__ import annotations

from pipelines.experiments.query_hydrators.experiment_arms import ExperimentArmsQueryHydrator
from pipelines.generation.filters.cameo_consent import CameoConsentFilter
from pipelines.generation.filters.clip_review import ClipReviewFilter
from pipelines.generation.filters.rights_optout import RightsOptOutFilter
from pipelines.generation.post_hydrators.generated_label import GeneratedLabelPostHydrator
from pipelines.serving.products.deps import ProductDeps
from ranking.filters.already_seen import AlreadySeenFilter
from ranking.filters.blocked_authors import BlockedAuthorsFilter
from ranking.filters.safety import SafetyFilter
from ranking.filters.unknown_clip import UnknownClipFilter
from ranking.hydrators.clip_features import ClipFeaturesHydrator
from ranking.pipeline import RankingPipeline
from ranking.post_hydrators.learned_explanations import LearnedExplanationsPostHydrator
from ranking.query_hydrators.data_controls import DataControlsQueryHydrator
from ranking.query_hydrators.user_context import UserContextQueryHydrator
from ranking.scorers.recency import RecencyScorer
from ranking.selectors.newest_first import NewestFirstSelector
from ranking.side_effects.log_impressions import LogImpressionsSideEffect
from ranking.sources.following import FollowingSource
from steering.filters.mood_exclusions import MoodExclusionsFilter
from steering.query_hydrators.active_mood import ActiveMoodQueryHydrator
from wellbeing.filters.governor_page import GovernorPageFilter
from wellbeing.filters.governor_stop import GovernorStopFilter
from wellbeing.query_hydrators.governor import GovernorQueryHydrator
from wellbeing.query_hydrators.survey_card import SurveyCardQueryHydrator
from wellbeing.side_effects.governor_page_count import GovernorPageCountSideEffect

FOLLOWING_ONLY = "following_only"


def build_following_only_feed(deps: ProductDeps) -> RankingPipeline:
    """Declare the following-only, newest-first pipeline."""
    steer, wb, gen = deps.steering, deps.wellbeing, deps.generation
    return RankingPipeline(
        name=FOLLOWING_ONLY,
        query_hydrators=[
            DataControlsQueryHydrator(deps.data_controls),  # first: the signals allowed
            UserContextQueryHydrator(deps.state),
            ExperimentArmsQueryHydrator(deps.experiments.running),
            ActiveMoodQueryHydrator(steer.moods, steer.controls, steer.concepts, rules=steer.rules),
            GovernorQueryHydrator(wb.governor),
            SurveyCardQueryHydrator(wb.surveys),
        ],
        sources=[FollowingSource(deps.state, limit=500)],
        hydrators=[ClipFeaturesHydrator(deps.state)],
        # Cheapest first, as in the home feed.
        filters=[
            UnknownClipFilter(),
            AlreadySeenFilter(),
            BlockedAuthorsFilter(),
            SafetyFilter(),
            GovernorStopFilter(),
            MoodExclusionsFilter(deps.state, concepts=steer.concepts),
            ClipReviewFilter(gen.reviews),
            CameoConsentFilter(deps.state, gen.consents),
            RightsOptOutFilter(deps.state, gen.optouts),
        ],
        scorers=[RecencyScorer()],
        selector=NewestFirstSelector(),
        post_filters=[GovernorPageFilter(wb.governor)],
        post_hydrators=[
            LearnedExplanationsPostHydrator(
                deps.learned, top_k=deps.learned.settings.explain_top_k
            ),
            GeneratedLabelPostHydrator(deps.state, deps.media_access.url),
        ],
        side_effects=[
            GovernorPageCountSideEffect(wb.governor),
            LogImpressionsSideEffect(
                deps.events, pipeline=FOLLOWING_ONLY, features=ClipFeaturesHydrator.FEATURES
            ),
        ],
    )
