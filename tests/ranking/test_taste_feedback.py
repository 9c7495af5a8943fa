"""Negative feedback (see less, skips, reports) moves the user's vector and topic mix away."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl

from ranking.context import RequestContext
from ranking.pipeline import FeedQuery
from ranking.query_hydrators.topic_mix import TopicMix, TopicMixQueryHydrator
from ranking.scorers.taste_feedback import TasteFeedbackScorer
from ranking.state import FeedState
from ranking.state.activity import NEGATIVE_HALF_LIFE_S

NOW = datetime(2026, 3, 1, 12, 0)


def _state() -> FeedState:
    """Ten cooking clips (vector e0) and ten finance clips (vector e1)."""
    st = FeedState(dim=4)
    ids = np.arange(1, 21)
    topics = [["cooking"] if i <= 10 else ["finance"] for i in ids]
    st.add_clips(
        pl.DataFrame(
            {"item_id": ids, "author_id": ids, "caption": "c", "topics": topics},
            schema_overrides={"item_id": pl.Int64, "author_id": pl.Int64},
        )
    )
    vecs = np.zeros((20, 4), dtype=np.float32)
    vecs[:10, 0] = 1.0
    vecs[10:, 1] = 1.0
    st.set_vectors(ids, vecs)
    return st


def _events(
    user: int, items: list[int], kind: str, at: datetime, **extra: list[float]
) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": [user] * len(items),
            "item_id": items,
            "event_type": [kind] * len(items),
            "ts": [at] * len(items),
            **extra,
        },
        schema_overrides={"ts": pl.Datetime("us"), "item_id": pl.Int64, "user_id": pl.Int64},
    )


def _liked_both(st: FeedState) -> None:
    # 70% cooking, 30% finance.
    st.apply_events(_events(1, [1, 2, 3, 4, 5, 6, 7], "like", NOW - timedelta(hours=1)))
    st.apply_events(_events(1, [11, 12, 13], "like", NOW - timedelta(hours=1)))


def test_see_less_moves_the_topic_mix_and_the_vector_away() -> None:
    st = _state()
    _liked_both(st)
    now = NOW.timestamp()
    before = st.activity.topic_mix(1, now)
    assert abs(before["finance"] - 0.3) < 1e-6
    vec_before = st.activity.user_vector(1, now)
    assert vec_before is not None
    st.apply_events(_events(1, [14, 15, 16], "see_less", NOW))
    after = st.activity.topic_mix(1, now)
    assert after["finance"] < 0.5 * before["finance"]
    # What the feedback took is left free (to explore), not handed to cooking.
    assert abs(after["cooking"] - before["cooking"]) < 1e-9
    vec_after = st.activity.user_vector(1, now)
    assert vec_after is not None
    # The vector turned away from the finance direction and stays a unit vector.
    assert vec_after[1] < vec_before[1] - 0.1
    assert abs(float(np.linalg.norm(vec_after)) - 1.0) < 1e-5
    assert st.activity.topic_feedback(1, now) == {"finance": 3.0}


def test_negative_feedback_decays_and_a_quick_skip_weighs_more_than_a_late_one() -> None:
    st = _state()
    _liked_both(st)
    st.apply_events(_events(1, [14], "skip", NOW, watch_frac=[0.05]))
    st.apply_events(_events(1, [1], "skip", NOW, watch_frac=[0.9]))
    fb = st.activity.topic_feedback(1, NOW.timestamp())
    assert fb["finance"] > fb["cooking"] > 0
    later = st.activity.topic_feedback(1, NOW.timestamp() + 2 * NEGATIVE_HALF_LIFE_S)
    assert abs(later["finance"] - fb["finance"] / 4) < 1e-9
    # A report weighs more than a see-less, which weighs more than a skip.
    st.apply_events(_events(2, [1], "report", NOW))
    st.apply_events(_events(3, [1], "see_less", NOW))
    st.apply_events(_events(4, [1], "skip", NOW))
    w = [st.activity.topic_feedback(u, NOW.timestamp())["cooking"] for u in (2, 3, 4)]
    assert w[0] > w[1] > w[2]


def test_scorer_demotes_the_topic_the_user_said_less_of() -> None:
    st = _state()
    _liked_both(st)
    st.apply_events(_events(1, [14, 15, 16], "see_less", NOW))
    q = FeedQuery(user_id=1, limit=5, now=NOW, session_id="s", context=RequestContext())
    TopicMixQueryHydrator(st).hydrate(q)
    mix = q.context.get(TopicMix)
    assert mix is not None and mix.against == {"finance": 3.0}
    cands = pl.DataFrame(
        {
            "item_id": [8, 17, 9, 10],
            "topic": ["cooking", "finance", "cooking", "cooking"],
            "score": [1.15, 1.2, 1.0, 0.9],
        }
    )
    scorer = TasteFeedbackScorer()
    assert scorer.enabled(q)
    out = scorer.score(q, cands)
    assert out[0] > out[1]  # the finance clip scored higher and now ranks below
    other = FeedQuery(user_id=2, limit=5, now=NOW, session_id="s")
    TopicMixQueryHydrator(st).hydrate(other)
    assert not scorer.enabled(other)
