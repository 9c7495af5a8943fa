"""The wellbeing cards a feed page carries: the governor block, the stop card, the survey card.

The query hydrators build them (:mod:`wellbeing.query_hydrators.governor`,
:mod:`wellbeing.query_hydrators.survey_card`) and put them into the request context; the engine
places them on the page (``FeedPage.governor``, ``.stop_card``, ``.survey``) and the API
serialises them as they are, so the OpenAPI schema documents every field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from wellbeing.governor import GovernorReason, GovernorState
from wellbeing.surveys import QuestionKind


class _Card(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GovernorCard(_Card):
    """The time-limit governor's state for this page (every page carries one)."""

    state: GovernorState = Field(
        description="'ok'; 'break_suggested' (show a break card, keep serving); "
        "'limit_reached' (the page holds no clips: show the stop card)"
    )
    minutes_used: float = Field(description="minutes watched today (local day)")
    minutes_left: float | None = Field(
        description="minutes until the nearest time budget runs out; null: no budget set"
    )
    reason: GovernorReason | None = Field(
        description="why the state is not 'ok' (sleep_hours, daily_limit, session_limit, "
        "page_cap, break_reminder)"
    )
    taper: float = Field(
        ge=0.0, le=1.0, description="0: no taper; rises to 1 as the budget runs out"
    )
    resumes_at: datetime | None = Field(
        description="when the feed comes back (sleep hours, daily limit), UTC"
    )
    pages_this_session: int = Field(ge=0, description="pages served in this session")
    message: str | None = Field(
        default=None, description="words for the break card (state 'break_suggested')"
    )


class StopCard(_Card):
    """Shown instead of clips when a time limit is reached."""

    kind: Literal["stop"] = "stop"
    reason: GovernorReason = Field(description="the limit that was reached")
    message: str = Field(description="what to tell the user")
    resumes_at: datetime | None = Field(description="when the feed comes back, UTC")


class SurveyScale(_Card):
    """The answer scale of a survey question."""

    min: int
    max: int
    labels: dict[str, str] = Field(description="words for some points of the scale")


class SurveyCard(_Card):
    """A survey question drawn for this page; answer with POST /v1/surveys/{survey_id}/answer."""

    survey_id: str
    question_key: str
    question: str
    kind: QuestionKind
    scale: SurveyScale
