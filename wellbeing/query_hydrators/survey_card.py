"""Query hydrator: decides, by the randomised sampling policy, whether this page asks a survey."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ranking.pipeline import FeedQuery

if TYPE_CHECKING:
    from wellbeing.service import SurveyService

logger = logging.getLogger(__name__)


class SurveyCardQueryHydrator:
    """Puts a :class:`~wellbeing.cards.SurveyCard` into the query context when the page draws
    a survey, and logs the card (with its inclusion probability) as shown.

    The draw runs on every page, the stop page included ("how do you feel after this session?"
    fits there best); a failure to draw never fails the page.
    """

    name = "survey_card"

    def __init__(self, surveys: SurveyService) -> None:
        self.surveys = surveys

    def hydrate(self, query: FeedQuery) -> None:
        """Draw and place the card."""
        try:
            card = self.surveys.maybe_draw(
                query.user_id,
                query.now,
                request_id=query.request_id,
                session_id=query.session_id,
            )
        except Exception:
            logger.exception(
                "survey draw failed (request %s); page served without", query.request_id
            )
            return
        if card is not None:
            query.context.put(card)
