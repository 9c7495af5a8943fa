"""Query hydrator: the time-limit governor's decision for this request, made on the server."""

from __future__ import annotations

import logging

from ranking.pipeline import FeedQuery
from wellbeing.service import BREAK_MESSAGE, GovernorService, stop_card

logger = logging.getLogger(__name__)

GOVERNOR_KEY = "governor"


class GovernorQueryHydrator:
    """Adds ``context["governor"]`` (a :class:`~wellbeing.service.GovernorView`) and puts the
    page's ``governor`` object (state, minutes used and left, reason, taper) into
    ``context["page_extras"]``; at a limit it adds the ``stop_card`` too.

    Usage is the server's own count (views and pages by server receive time, across devices
    and cursors), so neither a client clock nor a fresh cursor can move it.
    """

    name = "governor"

    def __init__(self, governor: GovernorService) -> None:
        self.governor = governor

    def hydrate(self, query: FeedQuery) -> None:
        """Evaluate the governor for the requesting user at the request's server time."""
        view = self.governor.view(query.user_id, query.now)
        query.context[GOVERNOR_KEY] = view
        extras = query.context.setdefault("page_extras", {})
        extras[GOVERNOR_KEY] = view.page_json()
        if view.decision.state == "limit_reached":
            extras["stop_card"] = stop_card(view)
        elif view.decision.state == "break_suggested":
            extras[GOVERNOR_KEY]["message"] = BREAK_MESSAGE
