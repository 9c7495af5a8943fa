"""The declared products, pinned: every stage and every component, in order.

A change to a product's assembly (a component added, removed or moved) must change this file
too, so the change is seen in review.
"""

from __future__ import annotations

from typing import Any

HOME = [
    "query_hydrator: data_controls [DataControlsQueryHydrator]",
    "query_hydrator: user_context [UserContextQueryHydrator]",
    "query_hydrator: experiment_arms [ExperimentArmsQueryHydrator]",
    "query_hydrator: topic_mix [TopicMixQueryHydrator]",
    "query_hydrator: active_mood [ActiveMoodQueryHydrator]",
    "query_hydrator: governor [GovernorQueryHydrator]",
    "query_hydrator: survey_card [SurveyCardQueryHydrator]",
    "source: generated [GeneratedForMoodSource]",
    "source: collab [CollabSource] (conditional)",
    "source: retrievers [RetrieversSource] (conditional)",
    "source: mood [MoodSource]",
    "source: more_of [MoreOfSource] (conditional)",
    "source: goal [GoalSource] (conditional)",
    "source: friends_creations [FriendsCreationsSource]",
    "source: following [FollowingSource]",
    "source: ann_user_vector [AnnUserVectorSource] (conditional)",
    "source: friends_of_friends [FriendsOfFriendsSource] (conditional)",
    "source: trending [TrendingSource]",
    "source: fresh [FreshSource]",
    "source: topic_mix [TopicMixSource] (conditional)",
    "hydrator: clip_features [ClipFeaturesHydrator]",
    "hydrator: learned_features [LearnedFeaturesHydrator]",
    "hydrator: retriever_features [RetrieverFeaturesHydrator] (conditional)",
    "hydrator: locality [LocalityHydrator]",
    "hydrator: intensity [IntensityHydrator]",
    "filter: unknown_clip [UnknownClipFilter]",
    "filter: already_seen [AlreadySeenFilter]",
    "filter: blocked_author [BlockedAuthorsFilter]",
    "filter: safety [SafetyFilter]",
    "filter: governor_stop [GovernorStopFilter] (conditional)",
    "filter: mood_exclusions [MoodExclusionsFilter]",
    "filter: clip_review [ClipReviewFilter]",
    "filter: cameo_consent [CameoConsentFilter]",
    "filter: rights_opt_out [RightsOptOutFilter]",
    "scorer: learned_value [LightGbmScorer] (conditional)",
    "scorer: hand_weighted [HandWeightedScorer] (conditional)",
    "scorer: local_boost [LocalBoostScorer] (conditional)",
    "scorer: mood [MoodScorer]",
    "scorer: taste_feedback [TasteFeedbackScorer] (conditional)",
    "scorer: friends_connection [FriendsConnectionScorer] (conditional)",
    "scorer: governor_taper [GovernorTaperScorer]",
    "scorer: satisfaction_head [SatisfactionHeadScorer]",
    "scorer: long_term_head [LongTermHeadScorer]",
    "selector: exploring > interleaving > own_generated_first > goal_share > calibrated > "
    "diverse_top_k [ExploringSelector]",
    "post_filter: governor_page [GovernorPageFilter] (conditional)",
    "post_hydrator: learned_explanations [LearnedExplanationsPostHydrator]",
    "post_hydrator: generated_label [GeneratedLabelPostHydrator]",
    "post_hydrator: goal_explanation [GoalExplanationPostHydrator] (conditional)",
    "side_effect: governor_page_count [GovernorPageCountSideEffect] (conditional)",
    "side_effect: log_impressions [LogImpressionsSideEffect]",
]

FOLLOWING_ONLY = [
    *[e for e in HOME[:7] if "topic_mix" not in e],
    "source: following [FollowingSource]",
    "hydrator: clip_features [ClipFeaturesHydrator]",
    *[e for e in HOME if e.startswith("filter: ")],
    "scorer: recency [RecencyScorer]",
    "selector: newest_first [NewestFirstSelector]",
    *[e for e in HOME[-6:] if "goal_explanation" not in e],
]


def test_home_feed_declares_every_stage_and_component_in_order(engine: Any) -> None:
    assert [str(e) for e in engine.products["home"].describe()] == HOME


def test_following_only_feed_declares_every_stage_and_component_in_order(engine: Any) -> None:
    assert [str(e) for e in engine.products["following_only"].describe()] == FOLLOWING_ONLY
    assert sorted(engine.products) == ["following_only", "home"]


def test_learned_scorer_serves_when_a_model_is_promoted_and_products_stay_as_declared(
    engine: Any,
) -> None:
    home = engine.products["home"]
    before = [str(e) for e in home.describe()]
    page = engine.feed(min(engine.state.profiles.users), limit=5)
    skipped = set(page.diagnostics.skipped)
    promoted = engine.learned.serving_version() is not None
    # Exactly one of the two value scorers runs: the learned one while a model is promoted.
    assert ("s.hand_weighted" in skipped) == promoted
    assert ("s.learned_value" in skipped) == (not promoted)
    assert engine.products["home"] is home and [str(e) for e in home.describe()] == before
