"""Reasons in words are true of the clip: a fact feature is a reason only when it holds."""

from __future__ import annotations

from ranking.explain import contribution_phrases, reason_text


def test_a_negative_contribution_of_an_absent_fact_says_it_is_absent() -> None:
    pairs = [("follows_author", -0.4), ("like_rate", 0.3), ("skip_rate", -0.2)]
    why, held = contribution_phrases(pairs, values={"follows_author": 0.0, "skip_rate": 0.1})
    assert why == ["people like it"]
    assert held == ["you do not follow the creator", "people skip it"]
    # The old words, without values, said the opposite of the truth.
    assert "weak signal: you follow the creator" in contribution_phrases(pairs)[1]


def test_an_absent_fact_is_never_a_reason_for_and_a_zero_rate_is_never_blamed() -> None:
    pairs = [("friend_cameo", 0.5), ("see_less_rate", -0.3), ("follows_author", 0.2)]
    why, held = contribution_phrases(
        pairs, values={"friend_cameo": 0.0, "see_less_rate": 0.0, "follows_author": 1.0}
    )
    assert why == ["you follow the creator"]
    assert held == []


def test_the_reason_names_a_friends_connection_first() -> None:
    facts = {"friend_cameo": 1.0, "remix_of_friend": 0.0, "follows_author": 0.0}
    text = reason_text("friends_creations", [("follows_author", 0.3)], facts=facts)
    assert text == "A friend appears in it."
    text = reason_text("trending", [("like_rate", 0.3)], facts={"remix_of_friend": 1.0})
    assert text == "Trending right now; remix of a friend's clip and people like it."
    assert reason_text("trending", [("friend_cameo", 0.4)], facts={"friend_cameo": 0.0}) == (
        "Trending right now."
    )
