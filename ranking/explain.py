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
    "friends_creations": "made with your friends",
    "generated": "made for your mood",
    "goal": "toward one of your goals",
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


#: Connections to a friend, named in the reason whenever the clip has one (the feature is 1).
CONNECTION_FEATURES = ("friend_cameo", "remix_of_friend")
CONNECTION_WORDS = {
    "friend_cameo": "a friend appears in it",
    "remix_of_friend": "remix of a friend's clip",
}


def connection_phrases(facts: dict[str, Any] | None) -> list[str]:
    """Words for the clip's connections to the user's friends (``facts``: feature values)."""
    if not facts:
        return []
    return [CONNECTION_WORDS[f] for f in CONNECTION_FEATURES if float(facts.get(f) or 0.0) > 0]


def reason_text(
    source: str, contributions: list[tuple[str, float]], *, facts: dict[str, Any] | None = None
) -> str:
    """Compose a one-line reason: the source's phrase and the strongest positive features.

    ``facts`` are the clip's feature values: a connection to a friend (a cameo, a remix of a
    friend's clip) is named whenever the clip has one, first when the friends' source found
    it, and only then (a contribution of a connection feature the clip lacks is not a reason).
    """
    links = connection_phrases(facts)
    if source == "friends_creations" and links:
        head, links = links[0], links[1:]
    else:
        head = SOURCE_REASONS.get(source, f"found by {source}")
    pairs = contributions
    if facts is not None:
        pairs = [(n, v) for n, v in contributions if n not in CONNECTION_FEATURES]
    top = links + [p for p in contribution_phrases(pairs, k=2, values=facts)[0] if p not in links]
    if top:
        return f"{head[0].upper()}{head[1:]}; {' and '.join(top[:2])}."
    return f"{head[0].upper()}{head[1:]}."


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


#: Features that state a fact about the clip or the viewer's tie to it. Said as a reason only
#: when the fact holds (value > 0); a model can also push a clip down because the fact does
#: not hold, and then these words say so (not "weak signal: you follow the creator" to someone
#: who does not follow the creator).
ABSENT_WORDS = {
    "follows_author": "you do not follow the creator",
    "author_is_friend": "the creator is not your friend",
    "friends_engaged": "no friend engaged with it",
    "friend_cameo": "no friend appears in it",
    "remix_of_friend": "it does not remix a friend's clip",
    "user_author_affinity": "you have not engaged with this creator yet",
    "is_generated": "it is not AI-generated",
}


def _value(values: dict[str, Any], name: str) -> float:
    v = values.get(name)
    try:
        return float(v) if v is not None else 0.0
    except (TypeError, ValueError):
        return 0.0


def contribution_phrases(
    contributions: list[tuple[str, float]],
    *,
    k: int = 3,
    values: dict[str, Any] | None = None,
) -> tuple[list[str], list[str]]:
    """Words for the strongest contributions: ``(reasons for, reasons against)``.

    ``contributions`` are ``(feature, signed contribution)`` pairs, strongest first (e.g. from
    LightGBM ``pred_contrib``); at most ``k`` phrases are returned on each side. With the
    clip's feature ``values`` every phrase is true of the clip: a fact feature
    (:data:`ABSENT_WORDS`) is a reason only when it holds and, when it does not, is said as
    its absence; "people skip it" (a bad rate) is said only when the rate is above zero.
    """
    pro: list[str] = []
    con: list[str] = []
    for n, v in contributions:
        absent = values is not None and n in ABSENT_WORDS and _value(values, n) <= 0
        zero_bad = values is not None and n in LOW_WORDS and _value(values, n) <= 0
        if v > 0:
            if not absent:
                pro.append(LOW_WORDS.get(n) or feature_phrase(n))
        elif v < 0:
            if absent:
                con.append(ABSENT_WORDS[n])
            elif n in LOW_WORDS:
                if not zero_bad:
                    con.append(feature_phrase(n))
            else:
                con.append(f"weak signal: {feature_phrase(n)}")
    return pro[:k], con[:k]
