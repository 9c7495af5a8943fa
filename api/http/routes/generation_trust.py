"""Trust endpoints of the generator (included by :mod:`api.routes.generations`): rights holders
(apply, names, notification log, takedowns; verification by an admin), the operator's list of
protected people, and the review queue of clips (held by frame review, reported, taken down)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from api.http.auth import ROLE_ADMIN, ROLE_ANALYST, Principal
from api.http.deps import EngineDep, PrincipalDep
from api.http.errors import errors
from pipelines.generation.review import REVIEW_STATUSES, UnknownReviewError
from pipelines.generation.rights import (
    HOLDER_STATUSES,
    NOTIFICATION_KINDS,
    HolderStateError,
    RightsHolder,
    UnknownHolderError,
)
from pipelines.generation.service import GenerationService

router = APIRouter(tags=["generations"])

HolderId = Annotated[str, Path(min_length=4, max_length=40, pattern=r"^rh_[0-9a-f]+$")]
ItemId = Annotated[int, Path(ge=0, le=2**62)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class HolderIn(BaseModel):
    """A rights holder's application: who they are and the names they hold."""

    model_config = ConfigDict(extra="forbid")

    user_id: int = Field(ge=0, le=2**62, description="the holder's account (a user)")
    name: str = Field(min_length=1, max_length=200, description="the holder, e.g. a studio")
    names: list[Name] = Field(min_length=1, max_length=500)
    kind: Literal["character", "brand", "work"] = "work"
    contact: str = Field(default="", max_length=500)
    evidence: str = Field(default="", max_length=2000, description="why these names are yours")


class NamesIn(BaseModel):
    """More names for a holder."""

    model_config = ConfigDict(extra="forbid")

    names: list[Name] = Field(min_length=1, max_length=500)
    kind: Literal["character", "brand", "work"] = "work"


class DecisionIn(BaseModel):
    """An admin's note on a decision."""

    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=1000)


class TakedownIn(BaseModel):
    """A request to take one clip down."""

    model_config = ConfigDict(extra="forbid")

    item_id: int = Field(ge=0, le=2**62)
    reason: str = Field(min_length=3, max_length=1000)


class AdminTakedownIn(BaseModel):
    """An admin's takedown of a clip."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=1000)


class PersonIn(BaseModel):
    """A real person whose name prompts may not use."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    aliases: list[Name] = Field(default_factory=list, max_length=20)
    user_id: int | None = Field(
        default=None, ge=0, le=2**62, description="their account here, if any (cameos allowed)"
    )
    note: str = Field(default="", max_length=500)


_HOLDER_WHY = {404: "unknown rights holder"}
_REVIEW_WHY = {404: "the clip is not in review"}


def _holder_for(svc: GenerationService, holder_id: str, principal: Principal) -> RightsHolder:
    """The holder, when the caller is its account (or an admin or service key)."""
    try:
        holder = svc.holders.get(holder_id)
    except UnknownHolderError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    if holder.user_id is None:
        principal.require(ROLE_ADMIN)
    else:
        principal.require_user_access(holder.user_id)
    return holder


def _holder_view(svc: GenerationService, holder: RightsHolder) -> dict[str, Any]:
    return {
        **holder.to_dict(),
        "names": [o.to_dict() for o in svc.optouts.of_holder(holder.holder_id)],
    }


# -- rights holders ------------------------------------------------------------------------------
@router.post(
    "/v1/rights-holders",
    status_code=status.HTTP_201_CREATED,
    responses=errors(404, 422, why={404: "unknown user"}),
)
def apply_holder(body: HolderIn, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """Apply as a rights holder. The holder and its names are ``pending`` until an admin
    verifies them; then prompts naming them are refused and clips naming them filtered."""
    principal.require_user_access(body.user_id)
    engine.require_user(body.user_id)
    svc = engine.generation
    try:
        holder, _ = svc.holders.apply(
            user_id=body.user_id,
            name=body.name,
            names=body.names,
            kind=body.kind,
            contact=body.contact,
            evidence=body.evidence,
        )
    except ValueError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    return _holder_view(svc, holder)


@router.get("/v1/rights-holders/{holder_id}", responses=errors(404, why=_HOLDER_WHY))
def get_holder(holder_id: HolderId, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """The holder's status and names (its own account, admins and service keys)."""
    svc = engine.generation
    return _holder_view(svc, _holder_for(svc, holder_id, principal))


@router.post(
    "/v1/rights-holders/{holder_id}/names",
    status_code=status.HTTP_201_CREATED,
    responses=errors(404, 409, 422, why=_HOLDER_WHY),
)
def add_holder_names(
    holder_id: HolderId, body: NamesIn, engine: EngineDep, principal: PrincipalDep
) -> dict[str, Any]:
    """More names; they wait for an admin's verification like the first ones."""
    svc = engine.generation
    _holder_for(svc, holder_id, principal)
    try:
        added = svc.holders.add_names(holder_id, body.names, kind=body.kind)
    except HolderStateError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    except ValueError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    return {"added": [o.to_dict() for o in added]}


@router.get("/v1/rights-holders/{holder_id}/notifications", responses=errors(404, why=_HOLDER_WHY))
def holder_notifications(
    holder_id: HolderId,
    engine: EngineDep,
    principal: PrincipalDep,
    kind: Annotated[Literal[NOTIFICATION_KINDS] | None, Query()] = None,  # type: ignore[valid-type]
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """What was refused, filtered or taken down in the holder's name, newest first (matched
    name, how it matched and the matching words; never who asked)."""
    svc = engine.generation
    _holder_for(svc, holder_id, principal)
    return {"notifications": svc.optouts.notifications(holder_id, kind=kind, limit=limit)}


@router.post(
    "/v1/rights-holders/{holder_id}/takedowns",
    status_code=status.HTTP_201_CREATED,
    responses=errors(
        404, 409, why={404: "unknown rights holder or clip", 409: "the holder is not verified"}
    ),
)
def holder_takedown(
    holder_id: HolderId, body: TakedownIn, engine: EngineDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Take one clip down at a verified holder's request: it leaves every feed, its media
    answer 410, and the takedown is recorded (an admin may restore it)."""
    svc = engine.generation
    _holder_for(svc, holder_id, principal)
    try:
        review = svc.holder_takedown(holder_id, body.item_id, body.reason)
    except HolderStateError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    except UnknownReviewError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    return review.to_dict()


@router.get("/v1/admin/rights-holders")
def list_holders(
    engine: EngineDep,
    principal: PrincipalDep,
    status_: Annotated[
        Literal[HOLDER_STATUSES] | None,  # type: ignore[valid-type]
        Query(alias="status"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Holders (admin and analyst keys), with their names."""
    principal.require(ROLE_ADMIN, ROLE_ANALYST)
    svc = engine.generation
    holders = svc.holders.list_holders(status=status_, limit=limit)
    return {"holders": [_holder_view(svc, h) for h in holders]}


def _decide(engine: Any, holder_id: str, verified: bool, note: str) -> dict[str, Any]:
    svc = engine.generation
    try:
        return dict(svc.verify_holder(holder_id, verified=verified, note=note))
    except UnknownHolderError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc


@router.post("/v1/admin/rights-holders/{holder_id}/verify", responses=errors(404, why=_HOLDER_WHY))
def verify_holder(
    holder_id: HolderId, body: DecisionIn, engine: EngineDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Verify a holder (admin): its pending names become active at once."""
    principal.require(ROLE_ADMIN)
    return _decide(engine, holder_id, True, body.note)


@router.post("/v1/admin/rights-holders/{holder_id}/reject", responses=errors(404, why=_HOLDER_WHY))
def reject_holder(
    holder_id: HolderId, body: DecisionIn, engine: EngineDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Reject a holder's application (admin): its pending names are dropped."""
    principal.require(ROLE_ADMIN)
    return _decide(engine, holder_id, False, body.note)


# -- protected people ----------------------------------------------------------------------------
@router.post(
    "/v1/admin/protected-people",
    status_code=status.HTTP_201_CREATED,
    responses=errors(404, 422, why={404: "unknown user"}),
)
def add_person(body: PersonIn, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """Protect a real person's name (admin): prompts naming them are refused with reason
    ``public_figure`` (unless they are a user who consented to be a cameo of the request)."""
    principal.require(ROLE_ADMIN)
    if body.user_id is not None:
        engine.require_user(body.user_id)
    try:
        person = engine.generation.people.add(
            body.name, aliases=body.aliases, user_id=body.user_id, note=body.note
        )
    except ValueError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    return person.to_dict()


@router.get("/v1/admin/protected-people")
def list_people(engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """The protected list: the operator's entries and the starter list (admin, analyst)."""
    principal.require(ROLE_ADMIN, ROLE_ANALYST)
    return {"people": [p.to_dict() for p in engine.generation.people.people()]}


@router.delete(
    "/v1/admin/protected-people/{person_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(404, why={404: "no such protected person"}),
)
def remove_person(
    person_id: Annotated[str, Path(max_length=64)], engine: EngineDep, principal: PrincipalDep
) -> None:
    """Take an operator entry off the list (admin; the starter list is switched off with
    ``STEERFEED_GEN_PROTECTED_STARTER=false``)."""
    principal.require(ROLE_ADMIN)
    if not engine.generation.people.remove(person_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no protected person {person_id!r}")


# -- review queue --------------------------------------------------------------------------------
@router.get("/v1/admin/clip-reviews")
def list_reviews(
    engine: EngineDep,
    principal: PrincipalDep,
    status_: Annotated[
        Literal[REVIEW_STATUSES] | None,  # type: ignore[valid-type]
        Query(alias="status"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The review queue, undecided entries first (admin and analyst keys)."""
    principal.require(ROLE_ADMIN, ROLE_ANALYST)
    reviews = engine.generation.reviews
    return {
        "counts": reviews.counts(),
        "reviews": [r.to_dict() for r in reviews.list_reviews(status=status_, limit=limit)],
    }


@router.get("/v1/admin/clip-reviews/{item_id}", responses=errors(404, why=_REVIEW_WHY))
def get_review(item_id: ItemId, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """One clip's review entry."""
    principal.require(ROLE_ADMIN, ROLE_ANALYST)
    review = engine.generation.reviews.get(item_id)
    if review is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"clip {item_id} is not in review")
    return review.to_dict()


@router.post("/v1/admin/clip-reviews/{item_id}/restore", responses=errors(404, why=_REVIEW_WHY))
def restore_clip(
    item_id: ItemId, body: DecisionIn, engine: EngineDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Show a held or taken-down clip again (admin); reports count afresh from here."""
    principal.require(ROLE_ADMIN)
    try:
        review = engine.generation.restore(
            item_id, decided_by=f"admin:{principal.key_id}", note=body.note
        )
    except UnknownReviewError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    return review.to_dict()


@router.post("/v1/admin/clip-reviews/{item_id}/take-down", responses=errors(404, why=_REVIEW_WHY))
def admin_take_down(
    item_id: ItemId, body: AdminTakedownIn, engine: EngineDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Take a clip down (admin): hidden everywhere, media 410, frames remembered so a
    re-render is held, decision recorded."""
    principal.require(ROLE_ADMIN)
    svc = engine.generation
    prev = svc.reviews.get(item_id)
    try:
        review = svc.take_down(
            item_id,
            source="admin",
            reason=body.reason,
            holder_id=prev.holder_id if prev else None,
            decided_by=f"admin:{principal.key_id}",
        )
    except UnknownReviewError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    return review.to_dict()
