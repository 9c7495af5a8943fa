"""The home feed: every stage and every component of a home page, in order.

Reading this function tells the whole request. Components that only some requests need say
so themselves (``enabled(query)``): the learned scorer while a model is promoted (the
hand-weighted one otherwise), the ANN sources while the vector index is open, the governor's
stop filter at a time limit. Nothing else adds, removes or reorders components.
"""

from __future__ import annotations

from features.registry import feature_names
from pipelines.experiments.query_hydrators.experiment_arms import ExperimentArmsQueryHydrator
from pipelines.experiments.selectors.exploring import ExploringSelector
from pipelines.experiments.selectors.interleaving import InterleavingSelector
from pipelines.generation.filters.cameo_consent import CameoConsentFilter
from pipelines.generation.filters.clip_review import ClipReviewFilter
from pipelines.generation.filters.rights_optout import RightsOptOutFilter
from pipelines.generation.post_hydrators.generated_label import GeneratedLabelPostHydrator
from pipelines.generation.selectors.own_generated_first import OwnGeneratedFirstSelector
from pipelines.generation.sources.generated import GeneratedForMoodSource
from pipelines.serving.products.deps import ProductDeps
from ranking.filters.already_seen import AlreadySeenFilter
from ranking.filters.blocked_authors import BlockedAuthorsFilter
from ranking.filters.safety import SafetyFilter
from ranking.filters.unknown_clip import UnknownClipFilter
from ranking.hydrators.clip_features import ClipFeaturesHydrator
from ranking.hydrators.learned_features import LearnedFeaturesHydrator
from ranking.hydrators.locality import LocalityHydrator
from ranking.hydrators.retriever_features import RetrieverFeaturesHydrator
from ranking.pipeline import RankingPipeline, Scorer
from ranking.post_hydrators.learned_explanations import LearnedExplanationsPostHydrator
from ranking.query_hydrators.data_controls import DataControlsQueryHydrator
from ranking.query_hydrators.topic_mix import TopicMixQueryHydrator
from ranking.query_hydrators.user_context import UserContextQueryHydrator
from ranking.retrieval.settings import COLLAB_SPACE
from ranking.scorers.friends_connection import FriendsConnectionScorer
from ranking.scorers.hand_weighted import HandWeightedScorer
from ranking.scorers.lightgbm_scorer import LightGbmScorer
from ranking.scorers.local_boost import LocalBoostScorer
from ranking.scorers.taste_feedback import TasteFeedbackScorer
from ranking.selectors.calibrated import CalibratedSelector
from ranking.selectors.diverse_top_k import DiverseTopKSelector
from ranking.side_effects.log_impressions import LogImpressionsSideEffect
from ranking.sources.ann_user_vector import AnnUserVectorSource
from ranking.sources.collab import CollabSource
from ranking.sources.following import FollowingSource
from ranking.sources.fresh import FreshSource
from ranking.sources.friends_creations import FriendsCreationsSource
from ranking.sources.friends_of_friends import FriendsOfFriendsSource
from ranking.sources.retrievers import RetrieversSource
from ranking.sources.topic_mix import TopicMixSource
from ranking.sources.trending import TrendingSource
from steering.filters.mood_exclusions import MoodExclusionsFilter
from steering.post_hydrators.goal_explanation import GoalExplanationPostHydrator
from steering.query_hydrators.active_mood import ActiveMoodQueryHydrator
from steering.scorers.mood import MoodScorer
from steering.selectors.goal_share import GoalShareSelector
from steering.sources.goal import GoalSource
from steering.sources.mood import MoodSource
from steering.sources.more_of import MoreOfSource
from wellbeing.filters.governor_page import GovernorPageFilter
from wellbeing.filters.governor_stop import GovernorStopFilter
from wellbeing.hydrators.intensity import IntensityHydrator
from wellbeing.query_hydrators.governor import GovernorQueryHydrator
from wellbeing.query_hydrators.survey_card import SurveyCardQueryHydrator
from wellbeing.scorers.governor_taper import GovernorTaperScorer
from wellbeing.scorers.satisfaction_head import LongTermHeadScorer, SatisfactionHeadScorer
from wellbeing.side_effects.governor_page_count import GovernorPageCountSideEffect

HOME = "home"


def build_home_feed(deps: ProductDeps) -> RankingPipeline:
    """Declare the home feed pipeline."""
    steer, wb, gen = deps.steering, deps.wellbeing, deps.generation
    learned = LightGbmScorer(
        deps.learned,
        fallback=HandWeightedScorer(deps.hand_weights),
        heavy_top_k=deps.learned.settings.heavy_top_k,
    )
    scorers: list[Scorer] = [
        learned,  # enabled while a model is promoted (or an experiment arm names one)
        HandWeightedScorer(deps.hand_weights, unless=learned.enabled),
        LocalBoostScorer(weight=deps.local_boost),  # a request with a city the person allows
        MoodScorer(),  # blends the value with the mood; the wellbeing scorers see the result
        TasteFeedbackScorer(),  # enabled after see-less, skips or reports: demotes the topic
        FriendsConnectionScorer(),  # enabled for a user with friends: their creations rise
        GovernorTaperScorer(strength=wb.settings.governor_taper),
        SatisfactionHeadScorer(wb.satisfaction, weight=wb.settings.satisfaction_weight),
        # The surrogate for the six-month answer: what the mix watched does over weeks.
        LongTermHeadScorer(wb.satisfaction, weight=wb.settings.long_term_weight),
    ]
    exp = deps.experiment_settings
    return RankingPipeline(
        name=HOME,
        query_hydrators=[
            # First: every later component reads the signals the person allows.
            DataControlsQueryHydrator(deps.data_controls),
            UserContextQueryHydrator(deps.state),
            # Before the others: the mood, governor and survey hydrators read the arm's overrides.
            ExperimentArmsQueryHydrator(deps.experiments.running),
            TopicMixQueryHydrator(deps.state),  # before active_mood, which steers the mix
            ActiveMoodQueryHydrator(steer.moods, steer.controls, steer.concepts, rules=steer.rules),
            GovernorQueryHydrator(wb.governor),
            SurveyCardQueryHydrator(wb.surveys),
        ],
        # Declaration order decides an item's source label when several find it.
        sources=[
            GeneratedForMoodSource(
                deps.state,
                limit=gen.settings.source_limit,
                min_similarity=gen.settings.source_min_similarity,
            ),
            CollabSource(
                deps.index,
                deps.collab.users,
                space=COLLAB_SPACE,
                limit=deps.collab.settings.limit,
                timeout_s=deps.collab.settings.timeout_s,
                state=deps.state,
            ),
            # The serving ranker's own retrievers (a ranker trained on an imported history).
            RetrieversSource(deps.learned),
            MoodSource(deps.index, deps.state),
            MoreOfSource(deps.state),  # enabled while the user has a standing more_of topic
            GoalSource(deps.state, steer.goals),  # enabled for a person with a goal
            # Before following: a friend's cameo by a followed creator says "a friend appears".
            FriendsCreationsSource(deps.state),
            FollowingSource(deps.state),
            AnnUserVectorSource(deps.index, deps.state),
            FriendsOfFriendsSource(deps.state),
            TrendingSource(deps.state),
            FreshSource(deps.state),
            TopicMixSource(deps.state),  # each topic of the user's mix has candidates
        ],
        hydrators=[
            ClipFeaturesHydrator(deps.state),
            LearnedFeaturesHydrator(deps.state),
            RetrieverFeaturesHydrator(deps.learned),  # enabled while the ranker has retrievers
            LocalityHydrator(deps.clip_cities),
            IntensityHydrator(wb.intensity),
        ],
        # Cheapest first: id lookups, then set membership, then column predicates; the stop
        # filter does no per-row work; the mood exclusions compare concept scores; the
        # generation filters are set lookups and precomputed flags.
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
        scorers=scorers,
        # Exploration (logged propensities) over team-draft interleaving (for users in an
        # interleaving experiment; it re-runs these scorers per arm) over the user's own new
        # generated clips first, then the calibrated top-k (the page follows the user's topic
        # mix; the diverse top-k without one).
        selector=ExploringSelector(
            InterleavingSelector(
                OwnGeneratedFirstSelector(
                    # A person's goals get at most their share of the page (20%).
                    GoalShareSelector(
                        CalibratedSelector(
                            DiverseTopKSelector(max_per_author=deps.max_per_author),
                            max_per_author=deps.max_per_author,
                        ),
                        steer.goals,
                    ),
                    deps.state,
                ),
                running=deps.experiments.running,
                scorers=lambda: scorers,
            ),
            rate=exp.exploration_rate,
            pool_size=exp.exploration_pool,
        ),
        post_filters=[GovernorPageFilter(wb.governor)],
        post_hydrators=[
            LearnedExplanationsPostHydrator(
                deps.learned, top_k=deps.learned.settings.explain_top_k
            ),
            GeneratedLabelPostHydrator(deps.state, deps.media_access.url),
            GoalExplanationPostHydrator(
                steer.goals
            ),  # after the learned explanations rewrite "why"
        ],
        side_effects=[
            GovernorPageCountSideEffect(wb.governor),  # inline: before the response leaves
            LogImpressionsSideEffect(deps.events, pipeline=HOME, features=feature_names()),
        ],
    )
