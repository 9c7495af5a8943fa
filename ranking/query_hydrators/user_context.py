"""Hydrates the requesting user's profile, vector and graph into the query."""

from __future__ import annotations

from ranking.history import taste_vector
from ranking.pipeline import FeedQuery
from ranking.state import FeedState

DEFAULT_MATURITY_MAX = 1
TEEN_MATURITY_MAX = 0


class UserContextQueryHydrator:
    """Sets the user's fields of ``query.context``: ``timezone``, ``maturity_max``,
    ``user_vector``, ``following``, ``friends``, ``blocked`` and ``seen``.

    The taste vector follows the data controls in ``context.signals``: none while interaction
    history is off, built without long views while watch time is off. ``seen`` is kept either
    way: it only stops a clip being shown twice, it ranks nothing.
    """

    name = "user_context"

    def __init__(self, state: FeedState) -> None:
        self.state = state

    def hydrate(self, query: FeedQuery) -> None:
        """Fill the context from the in-memory state."""
        st = self.state
        uid = query.user_id
        profile = st.profiles.by_user.get(uid, {"is_teen": False, "settings": {}})
        settings = profile.get("settings") or {}
        default_max = TEEN_MATURITY_MAX if profile.get("is_teen") else DEFAULT_MATURITY_MAX
        maturity_max = int(settings.get("maturity_max", default_max))
        if profile.get("is_teen"):
            # A teen's own setting can never open mature content.
            maturity_max = min(maturity_max, TEEN_MATURITY_MAX)
        ctx = query.context
        ctx.timezone = str(profile.get("timezone") or "UTC")
        ctx.maturity_max = maturity_max
        ctx.user_vector = taste_vector(st, uid, query.now_epoch, ctx.signals)
        ctx.following = st.graph.following.get(uid, set())
        ctx.friends = st.graph.friends(uid)
        ctx.blocked = st.graph.blocked.get(uid, set())
        ctx.seen = st.activity.seen.get(uid, set())
