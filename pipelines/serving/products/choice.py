"""Which product a request gets: the one place that redirects a product."""

from __future__ import annotations

from pipelines.serving.products.following_only import FOLLOWING_ONLY
from pipelines.serving.products.home import HOME
from ranking.state import FeedState
from steering.services import is_personalized
from wellbeing.service import GovernorService


def choose_product(
    state: FeedState, governor: GovernorService, user_id: int, requested: str
) -> str:
    """``home`` becomes ``following_only`` for a user with personalization off, by their own
    setting (``settings.personalized``) or a parent's (the governor's settings)."""
    if requested == HOME and (
        not is_personalized(state, user_id) or not governor.settings_for(user_id).personalized
    ):
        return FOLLOWING_ONLY
    return requested
