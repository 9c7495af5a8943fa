"""Query hydrator: the user's interest mix over topics (what a calibrated page follows) and the
negative feedback per topic (what the taste-feedback scorer demotes)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ranking.pipeline import FeedQuery
from ranking.state import FeedState

#: Share a standing "more of" topic is given before renormalising (a topic the user never
#: watched gets room on the page; one they watch a lot gains that much more).
MORE_SHARE = 0.25
#: Factor on a "less of" topic's share.
LESS_FACTOR = 0.25


@dataclass
class TopicMix:
    """The user's interest mix over primary topics (``shares`` sums to at most 1; the rest,
    :attr:`free`, is what negative feedback took away, left to exploration).

    Built from the decayed engagement history, with negative feedback (see-less, skips,
    reports) taking weight away (:meth:`~ranking.state.FeedState.topic_mix`). Steering may
    adjust it for the request (:meth:`steer`) or switch calibration off (``calibrate``: a mood
    says what the page is about, the history does not).
    """

    shares: dict[str, float] = field(default_factory=dict)
    calibrate: bool = True
    against: dict[str, float] = field(default_factory=dict)
    """Decayed negative feedback per topic (what the taste-feedback scorer demotes)."""

    @property
    def free(self) -> float:
        """The share no topic of the history holds (left to exploration)."""
        return max(0.0, 1.0 - sum(self.shares.values()))

    def steer(
        self, *, more: Iterable[str] = (), less: Iterable[str] = (), never: Iterable[str] = ()
    ) -> None:
        """Apply standing rules to the mix: "less" keeps :data:`LESS_FACTOR` of the topic's
        share and "never" removes it, the share taken left free (handed to the history's other
        topics, a user whose history is 92% science kept 77% science after "less science");
        "more" adds :data:`MORE_SHARE`, the mix scaled back to a total of 1 if it went over."""
        shares = dict(self.shares)
        for t in less:
            if t in shares:
                shares[t] *= LESS_FACTOR
        for t in never:
            shares.pop(t, None)
        for t in more:
            shares[t] = shares.get(t, 0.0) + MORE_SHARE
        total = sum(shares.values())
        scale = 1.0 / total if total > 1.0 else 1.0
        self.shares = {t: v * scale for t, v in shares.items() if v > 0}


class TopicMixQueryHydrator:
    """Puts the user's :class:`TopicMix` into the query context (memory only)."""

    name = "topic_mix"

    def __init__(self, state: FeedState) -> None:
        self.state = state

    def hydrate(self, query: FeedQuery) -> None:
        """Put the mix (an empty one for a user without history)."""
        st, uid, now = self.state, query.user_id, query.now_epoch
        query.context.put(
            TopicMix(st.activity.topic_mix(uid, now), against=st.activity.topic_feedback(uid, now))
        )
