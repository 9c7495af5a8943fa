""" "Why am I seeing this": short reasons in words from the source and feature contributions."""

from __future__ import annotations

from typing import Any

SOURCE_REASONS = {
    "following": "from a creator you follow",
    "friends_of_friends": "popular with creators the people you follow follow",
    "ann_user_vector": "similar to clips you enjoyed",
    "collab": "watched by people with tastes like yours",
    "trending": "trending right now",
    "fresh": "new on steerfeed",
    "mood": "matches your mood",
    "more_of": "a topic you asked to see more of",
    "generated": "made for your mood",
}

FEATURE_WORDS = {
    "user_clip_cosine": "close to what you like",
    "follows_author": "you follow the creator",
    "author_is_friend": "the creator is your friend",
    "friends_engaged": "friends engaged with it",
    "friend_cameo": "a friend appears in it",
    "remix_of_friend": "it remixes a friend's clip",
    "completion_rate": "people watch it to the end",
    "like_rate": "people like it",
    "comment_rate": "people talk about it",
    "remix_rate": "people create from it",
    "share_rate": "people share it",
    "velocity_log": "engagement is rising fast",
    "freshness": "it is new",
    "views_log": "many people watched it",
    "author_followers_log": "a well-followed creator",
    "age_hours": "its age",
    "skip_rate": "people skip it",
    "see_less_rate": "people ask to see less of it",
    "report_rate": "it was reported",
    "mood_similarity": "it matches your mood",
    "satisfaction": "people feel good after clips like it",
    "author_credibility": "a creator many trusted accounts follow",
    "author_engagement_rate": "the creator's clips get a lot of engagement",
    "author_follower_growth_7d": "the creator is gaining followers",
    "user_author_affinity": "you often engage with this creator",
    "same_city": "it was made in your city",
    "is_generated": "it is AI-generated",
    "maturity": "its maturity rating",
    "safety": "its safety label",
    "hour_of_day": "the time of day",
    "session_depth": "how long you have been watching",
}

# Features whose phrase names something bad: a negative contribution reads as it is, a
# positive one (a low value helped the clip) gets these words.
LOW_WORDS = {
    "skip_rate": "people rarely skip it",
    "see_less_rate": "people rarely ask to see less of it",
    "report_rate": "it is rarely reported",
    "safety": "it is labelled safe",
}


def feature_phrase(name: str) -> str:
    """Words for one feature name (the name itself when no words are known)."""
    return FEATURE_WORDS.get(name, name.replace("_", " "))


def reason_text(source: str, contributions: list[tuple[str, float]]) -> str:
    """Compose a one-line reason: the source's phrase and the strongest positive features."""
    head = SOURCE_REASONS.get(source, f"found by {source}")
    top = contribution_phrases(contributions, k=2)[0]
    if top:
        return f"{head.capitalize()}; {' and '.join(top)}."
    return f"{head.capitalize()}."


def top_contributions(
    row: dict[str, Any], weights: dict[str, float], *, k: int = 3
) -> list[tuple[str, float]]:
    """Largest ``weight * value`` terms for one candidate row, by absolute size."""
    terms = [
        (name, float(w) * float(row.get(name) or 0.0))
        for name, w in weights.items()
        if w and name in row
    ]
    terms.sort(key=lambda t: -abs(t[1]))
    return terms[:k]


def contribution_phrases(
    contributions: list[tuple[str, float]], *, k: int = 3
) -> tuple[list[str], list[str]]:
    """Words for the strongest contributions: ``(reasons for, reasons against)``.

    ``contributions`` are ``(feature, signed contribution)`` pairs, strongest first (e.g. from
    LightGBM ``pred_contrib``); at most ``k`` phrases are returned on each side.
    """
    pro = [LOW_WORDS.get(n) or feature_phrase(n) for n, v in contributions if v > 0][:k]
    con = [
        feature_phrase(n) if n in LOW_WORDS else f"weak signal: {feature_phrase(n)}"
        for n, v in contributions
        if v < 0
    ][:k]
    return pro, con
