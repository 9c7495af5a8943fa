"""Parental controls: a parent account linked to a teen changes the teen's limits.

A link is made by an admin (``POST /v1/parental/links``) once the parent is verified. A linked
``parent`` key may then turn personalization off (the teen gets the following-only,
newest-first feed), cap pages per session (no continuous scrolling), cap AI-generated clips per
day and change the time limits. A ``user`` key can never do this, for itself or anyone.

A teen's cameo consent (at most ``friends``) counts only once a linked parent approves it
(``POST /v1/parental/children/{id}/cameo-consent/approval``); a parent can never give or widen
it for the teen, only approve the teen's own choice or revoke it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel, ConfigDict, Field

from api.http.deps import EngineDep, PrincipalDep
from api.http.errors import errors
from api.http.routes.wellbeing import HHMM, changes_of, governor_json
from pipelines.generation.consent import ConsentError
from wellbeing.errors import GovernorSettingsError

router = APIRouter(prefix="/v1/parental", tags=["parental"])

UserId = Annotated[int, Path(ge=0, le=2**62)]


class LinkIn(BaseModel):
    """Link a parent account to a child account."""

    model_config = ConfigDict(extra="forbid")

    parent_id: int = Field(ge=0, le=2**62)
    child_id: int = Field(ge=0, le=2**62)


class ParentalControlsIn(BaseModel):
    """Controls to change for a linked child; only the fields sent change (``null`` switches a
    limit off)."""

    model_config = ConfigDict(extra="forbid")

    personalized: bool | None = None
    max_pages_per_session: int | None = Field(default=None, ge=1, le=10_000)
    max_generated_per_day: int | None = Field(default=None, ge=0, le=100_000)
    daily_limit_min: int | None = Field(default=None, ge=1, le=1440)
    session_limit_min: int | None = Field(default=None, ge=1, le=1440)
    break_every_min: int | None = Field(default=None, ge=1, le=1440)
    sleep_start: str | None = Field(default=None, max_length=5, pattern=HHMM)
    sleep_end: str | None = Field(default=None, max_length=5, pattern=HHMM)


def _require_linked_parent(engine: Any, principal: Any, child_id: int) -> int:
    if principal.role == "user":
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="a user key cannot change parental controls, for itself or anyone; "
            "a parent key linked to the account can",
        )
    principal.require("parent", "admin")
    engine.require_user(child_id)
    if principal.role == "parent":
        parent_id = int(principal.user_id)
        if child_id not in engine.wellbeing.children_of(parent_id):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"user {child_id} is not linked to parent {parent_id}; "
                "an admin links accounts with POST /v1/parental/links",
            )
        return parent_id
    return -1


@router.post(
    "/links",
    status_code=status.HTTP_201_CREATED,
    responses=errors(404, 422, why={404: "unknown child"}),
)
def link(body: LinkIn, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """Link a parent account to a child (admin only, after verifying the parent)."""
    principal.require("admin")
    engine.require_user(body.child_id)
    if body.parent_id == body.child_id:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="cannot parent oneself")
    new = engine.wellbeing.repo.link(body.parent_id, body.child_id)
    return {"parent_id": body.parent_id, "child_id": body.child_id, "created": new}


@router.get("/children")
def children(engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """The parent's linked children with their limits and today's usage."""
    principal.require("parent")
    kids = engine.wellbeing.children_of(int(principal.user_id or 0))
    return {
        "children": [governor_json(engine, c) for c in kids if c in engine.state.profiles.users]
    }


@router.get("/children/{child_id}")
def child(child_id: UserId, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """One linked child's limits and today's usage."""
    _require_linked_parent(engine, principal, child_id)
    return governor_json(engine, child_id)


@router.patch("/children/{child_id}/controls", responses=errors(422))
def change_controls(
    child_id: UserId, body: ParentalControlsIn, engine: EngineDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Change a linked child's controls; they apply from the child's next page."""
    parent_id = _require_linked_parent(engine, principal, child_id)
    changes = changes_of(body)
    svc = engine.wellbeing
    try:
        svc.governor.update_by_parent(child_id, changes, parent_id=parent_id)
    except GovernorSettingsError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    if "personalized" in changes:
        # The user settings key the non-personalized (following-only) feed reads.
        stored = dict(engine.store.get_user(child_id)["settings"])
        stored["personalized"] = bool(changes["personalized"])
        engine.store.update_user_settings(child_id, stored)
        engine.state.profiles.set_user_settings(child_id, stored)
    out = governor_json(engine, child_id)
    out["changed"] = sorted(changes)
    out["changed_at"] = datetime.now(UTC).isoformat()
    return out


@router.post(
    "/children/{child_id}/cameo-consent/approval",
    responses=errors(409, why={409: "the teen has no consent waiting for approval"}),
)
def approve_cameo_consent(
    child_id: UserId, engine: EngineDep, principal: PrincipalDep
) -> dict[str, Any]:
    """A linked parent approves the teen's own cameo consent (at most ``friends``); it takes
    effect from the next page. Only a ``parent`` key linked to the teen may approve."""
    principal.require("parent")
    parent_id = _require_linked_parent(engine, principal, child_id)
    try:
        consent = engine.generation.consents.approve(child_id, parent_id=parent_id)
    except ConsentError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    return consent.to_dict()
