"""Wellbeing endpoints: a user's time limits (the governor) and survey answers and dismissals."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.http.deps import EngineDep, PrincipalDep, parent_links
from api.http.errors import errors
from wellbeing.errors import GovernorPermissionError, GovernorSettingsError, SurveyError
from wellbeing.my_view import personal_view

router = APIRouter(prefix="/v1", tags=["wellbeing"])

UserId = Annotated[int, Path(ge=0, le=2**62)]
SurveyId = Annotated[str, Path(min_length=1, max_length=64)]
HHMM = r"^([01]\d|2[0-3]):([0-5]\d)$"


class GovernorChangeIn(BaseModel):
    """Time-limit settings to change; only the fields sent change (``null`` switches a limit
    off). A teen may only tighten their own limits."""

    model_config = ConfigDict(extra="forbid")

    daily_limit_min: int | None = Field(default=None, ge=1, le=1440)
    session_limit_min: int | None = Field(default=None, ge=1, le=1440)
    break_every_min: int | None = Field(default=None, ge=1, le=1440)
    sleep_start: str | None = Field(default=None, max_length=5, pattern=HHMM)
    sleep_end: str | None = Field(default=None, max_length=5, pattern=HHMM)
    max_pages_per_session: int | None = Field(default=None, ge=1, le=10_000)
    max_generated_per_day: int | None = Field(default=None, ge=0, le=100_000)
    personalized: bool | None = None
    taper_start_fraction: float | None = Field(default=None, gt=0.0, le=1.0)


class SurveyAnswerIn(BaseModel):
    """An answer on the question's scale (1-5)."""

    model_config = ConfigDict(extra="forbid")

    answer: int = Field(ge=1, le=5)


def changes_of(body: BaseModel) -> dict[str, Any]:
    """The fields the client sent (``null`` included), or 422 when none was."""
    changes = body.model_dump(exclude_unset=True)
    if "personalized" in changes and changes["personalized"] is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail="personalized must be true or false"
        )
    if not changes:
        valid = ", ".join(type(body).model_fields)
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"send at least one of: {valid}"
        )
    return changes


def governor_json(engine: Any, user_id: int) -> dict[str, Any]:
    """A user's effective settings, what binds them and today's decision."""
    gov = engine.wellbeing.governor
    view = gov.view(user_id, datetime.now(UTC).replace(tzinfo=None))
    prof = gov.profile(user_id)
    return {
        "user_id": user_id,
        "is_teen": prof.is_teen,
        "timezone": prof.timezone,
        "settings": view.settings.model_dump(),
        "ceiling": gov.ceiling_for(user_id).model_dump() if prof.is_teen else None,
        "governor": view.page_card(),
    }


@router.get("/users/{user_id}/governor")
def get_governor(user_id: UserId, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """The user's time limits and where they stand today."""
    principal.require_user_access(user_id, parent_of=parent_links(engine, principal))
    engine.require_user(user_id)
    return governor_json(engine, user_id)


@router.patch(
    "/users/{user_id}/governor",
    responses=errors(403, 422, why={403: "a teen loosening their own limits"}),
)
def change_own_governor(
    user_id: UserId, body: GovernorChangeIn, engine: EngineDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Change the user's own time limits. A teen may tighten but never loosen them (403 names
    what was refused); a parent changes a teen's limits through ``/v1/parental``."""
    principal.require("user", "service", "admin")
    principal.require_user_access(user_id)
    engine.require_user(user_id)
    changes = changes_of(body)
    try:
        engine.wellbeing.governor.update_own(user_id, changes)
    except GovernorPermissionError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=str(exc)) from exc
    except GovernorSettingsError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    return governor_json(engine, user_id)


_SURVEY_WHY = {
    404: "unknown survey",
    409: "already answered or dismissed",
    422: "the answer is off the question's scale",
}


def _close_survey(
    engine: Any, principal: Any, survey_id: str, answer: int | None
) -> dict[str, Any]:
    svc = engine.wellbeing.surveys
    prompt = svc.repo.prompt(survey_id)
    if prompt is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown survey_id {survey_id!r}")
    principal.require("user", "service", "admin")
    principal.require_user_access(int(prompt["user_id"]))
    now = datetime.now(UTC)
    try:
        if answer is None:
            row = svc.dismiss(survey_id, now=now)
        else:
            row = svc.answer(survey_id, answer, now=now)
    except SurveyError as exc:
        code = status.HTTP_409_CONFLICT if "already" in str(exc) else 422
        raise HTTPException(code, detail=str(exc)) from exc
    engine.telemetry.survey_closed(answered=answer is not None)
    return {
        "survey_id": survey_id,
        "status": row["status"],
        "answer": row["answer"],
        "question_key": row["question_key"],
    }


@router.post("/surveys/{survey_id}/answer", responses=errors(404, 409, 422, why=_SURVEY_WHY))
def answer_survey(
    survey_id: SurveyId, body: SurveyAnswerIn, engine: EngineDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Answer a survey card shown on a feed page."""
    return _close_survey(engine, principal, survey_id, body.answer)


@router.post("/surveys/{survey_id}/dismiss", responses=errors(404, 409, 422, why=_SURVEY_WHY))
def dismiss_survey(
    survey_id: SurveyId, engine: EngineDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Dismiss a survey card (logged as a non-response; cards left alone expire the same way)."""
    return _close_survey(engine, principal, survey_id, None)


MyViewDays = Annotated[int, Query(ge=1, le=366, description="how many days back (1-366)")]


def _my_view(engine: Any, user_id: int, days: int) -> dict[str, Any]:
    prof = engine.wellbeing.governor.profile(user_id)
    return personal_view(
        engine.store, user_id, timezone=prof.timezone, now=datetime.now(UTC), days=days
    )


@router.get("/users/{user_id}/my-view")
def get_my_view(
    user_id: UserId,
    engine: EngineDep,
    principal: PrincipalDep,
    days: MyViewDays = 28,
) -> dict[str, Any]:
    """The person's own view over time: minutes per day and week, their survey answers, and
    the settings and signals that changed what their feed does. Only the person (and the
    service or an admin acting for them): a parent sees limits and usage through
    ``/v1/parental``, not a teen's answers and moods."""
    principal.require_user_access(user_id)
    engine.require_user(user_id)
    return _my_view(engine, user_id, days)


@router.get("/users/{user_id}/my-view/export")
def export_my_view(
    user_id: UserId,
    engine: EngineDep,
    principal: PrincipalDep,
    days: MyViewDays = 366,
) -> JSONResponse:
    """The same as a file to keep (a year by default)."""
    principal.require_user_access(user_id)
    engine.require_user(user_id)
    body = _my_view(engine, user_id, days)
    return JSONResponse(
        body,
        headers={"Content-Disposition": f'attachment; filename="steerfeed-my-view-{user_id}.json"'},
    )
