"""Query hydrator: the time-limit governor's decision for this request, made on the server."""

from __future__ import annotations

import logging

from ranking.pipeline import FeedQuery
from wellbeing.service import GovernorService, stop_card

logger = logging.getLogger(__name__)


class GovernorQueryHydrator:
    """Puts the request's :class:`~wellbeing.service.GovernorView` and the page's
    :class:`~wellbeing.cards.GovernorCard` (state, minutes used and left, reason, taper) into
    the query context; at a limit the :class:`~wellbeing.cards.StopCard` too.

    Usage is the server's own count (views and pages by server receive time, across devices
    and cursors), so neither a client clock nor a fresh cursor can move it.
    """

    name = "governor"

    def __init__(self, governor: GovernorService) -> None:
        self.governor = governor

    def hydrate(self, query: FeedQuery) -> None:
        """Evaluate the governor for the requesting user at the request's server time."""
        view = self.governor.view(query.user_id, query.now)
        ctx = query.context
        ctx.put(view)
        ctx.put(view.page_card())
        if view.decision.state == "limit_reached":
            ctx.put(stop_card(view))
