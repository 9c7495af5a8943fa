"""In-memory serving state, in parts: catalogue, engagement counters, social graph, user
activity and profiles.

The feed must answer in milliseconds, so the request path never queries DuckDB. Each part is
rebuilt from the store (its ``load``), kept current from committed events (``apply_events``,
where the event log concerns it) and by the write path (``add_*``), and forgets a user on
erasure (``forget_user``). :class:`FeedState` holds the parts and the lock they share, and
dispatches what spans them (see docs/architecture.md, "Serving state").
"""

from __future__ import annotations

from ranking.state.activity import MAX_HISTORY, USER_VECTOR_HALF_LIFE_S, UserActivity, UserHistory
from ranking.state.catalogue import SAFETY_CODES, Catalogue
from ranking.state.engagement import VELOCITY_HALF_LIFE_S, EngagementCounters
from ranking.state.events import (
    COUNTERS,
    EVENT_TO_COUNTER,
    LONG_VIEW_FRACTION,
    POSITIVE_WEIGHTS,
    EventBatch,
)
from ranking.state.feed_state import FeedState
from ranking.state.frames import to_epoch
from ranking.state.graph import SocialGraph
from ranking.state.profiles import Profiles

__all__ = [
    "COUNTERS",
    "EVENT_TO_COUNTER",
    "LONG_VIEW_FRACTION",
    "MAX_HISTORY",
    "POSITIVE_WEIGHTS",
    "SAFETY_CODES",
    "USER_VECTOR_HALF_LIFE_S",
    "VELOCITY_HALF_LIFE_S",
    "Catalogue",
    "EngagementCounters",
    "EventBatch",
    "FeedState",
    "Profiles",
    "SocialGraph",
    "UserActivity",
    "UserHistory",
    "to_epoch",
]
