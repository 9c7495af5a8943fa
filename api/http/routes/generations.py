"""Generation endpoints: ask for clips and remixes, poll their status, manage cameo consent and
(admins) the rights-holder opt-out registry; rights holders, protected people and the review
queue come from :mod:`api.routes.generation_trust`."""

from __future__ import annotations

import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.http.auth import (
    ROLE_ADMIN,
    ROLE_ANALYST,
    ROLE_PARENT,
    ROLE_SERVICE,
    ROLE_USER,
    Principal,
)
from api.http.deps import EngineDep, PrincipalDep, parent_links
from api.http.errors import errors
from api.http.routes.generation_trust import router as trust_router
from pipelines.generation.consent import ConsentError, no_consent
from pipelines.generation.errors import RuleViolation, UnknownJobError
from pipelines.generation.rights import OPTOUT_KINDS
from pipelines.generation.settings import RenderParams

router = APIRouter(tags=["generations"])

UserId = Annotated[int, Path(ge=0, le=2**62)]
JobId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")]


class GenerationIn(BaseModel):
    """A clip to make: a prompt, optionally remixing a clip and with cameos of people who
    opted in."""

    model_config = ConfigDict(extra="forbid")

    user_id: int = Field(ge=0, le=2**62, description="who asks (the clip's author)")
    prompt: str = Field(min_length=3, max_length=500)
    remix_of: int | None = Field(default=None, ge=0, le=2**62)
    cameos: list[Annotated[int, Field(ge=0, le=2**62)]] = Field(default_factory=list, max_length=8)
    params: RenderParams | None = None

    @field_validator("prompt")
    @classmethod
    def _has_words(cls, v: str) -> str:
        if not any(ch.isalnum() for ch in v):
            msg = "prompt needs words describing the clip"
            raise ValueError(msg)
        return v.strip()


class ConsentIn(BaseModel):
    """Who may see and use your likeness: ``none`` (nobody but you; ``only_me`` is its old
    name), ``friends`` (mutual follows) or ``everyone``. A teen may choose at most
    ``friends``, and a linked parent approves it."""

    model_config = ConfigDict(extra="forbid")

    audience: Literal["none", "friends", "everyone", "only_me"]


class OptOutIn(BaseModel):
    """A rights holder's blanket opt-out: names of characters, brands or works."""

    model_config = ConfigDict(extra="forbid")

    holder: str = Field(min_length=1, max_length=200)
    names: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=500
    )
    kind: Literal["character", "brand", "work"] = "work"


class Refusal(BaseModel):
    """Why a generation request was refused (a rule, not malformed input)."""

    reason: str
    message: str


class RefusalOrInvalid(BaseModel):
    """A 403/422 of this route: a rule's refusal, or the usual validation errors."""

    detail: Refusal | list[dict[str, Any]] | str
    message: str | None = None


REFUSAL_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"model": RefusalOrInvalid, "description": "refused: cameo consent missing"},
    422: {
        "model": RefusalOrInvalid,
        "description": "refused by a rule (public figure, opt-out, safety, remix source) or "
        "invalid input",
    },
}


# The per-user cap's count and the insert happen under one lock, so parallel requests of one
# user cannot all pass the count (the server is one process: the store has one writer).
_submit_lock = threading.Lock()


def _refuse(exc: RuleViolation) -> HTTPException:
    # A missing consent is the caller's permission problem (403); the rest ask for a new prompt.
    code = status.HTTP_403_FORBIDDEN if exc.reason == "cameo_consent" else 422
    return HTTPException(code, detail={"reason": exc.reason, "message": exc.message})


@router.post(
    "/v1/generations",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **REFUSAL_RESPONSES,
        **errors(
            404,
            429,
            why={
                404: "unknown user",
                429: "the user has the most pending jobs allowed; see Retry-After",
            },
        ),
    },
)
def create_generation(
    body: GenerationIn, request: Request, engine: EngineDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Queue a clip. Refused with a reason (``cameo_consent`` 403; ``public_figure``,
    ``rights_opt_out``, ``prompt_safety``, ``remix_source`` 422) when a rule says no, and 429
    (``Retry-After``) while the user already has the most queued or running jobs allowed
    (``STEERFEED_API_GENERATION_MAX_PENDING_PER_USER``). Poll ``status_url``."""
    principal.require_user_access(body.user_id, parent_of=parent_links(engine, principal))
    engine.require_user(body.user_id)
    svc = engine.generation
    settings = request.app.state.api_settings
    cap = int(settings.generation_max_pending_per_user)
    # In-flight work of everyone it names (an erasure waits for the job to be queued).
    with _submit_lock, engine.fence.hold([body.user_id, *body.cameos]):
        pending = svc.queue.pending_for(body.user_id) if cap else 0
        if cap and pending >= cap:
            retry = int(settings.generation_retry_after_s)
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                detail=f"user {body.user_id} has {pending} generation jobs queued or running "
                f"(at most {cap}); retry when one finishes",
                headers={"Retry-After": str(retry)},
            )
        try:
            job = svc.submit(
                body.prompt,
                requested_by=body.user_id,
                remix_of=body.remix_of,
                cameos=body.cameos,
                params=body.params,
            )
        except RuleViolation as exc:
            raise _refuse(exc) from exc
    return {**job.to_dict(), "status_url": f"/v1/generations/{job.job_id}"}


@router.get("/v1/generations/{job_id}", responses=errors(404, why={404: "unknown job"}))
def get_generation(job_id: JobId, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """A job's status; once ``done``: the clip id, video and poster URLs and provenance."""
    svc = engine.generation
    try:
        job = svc.queue.get(job_id)
    except UnknownJobError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    if job.requested_by is None:
        principal.require(ROLE_SERVICE, ROLE_ADMIN, ROLE_ANALYST)
    else:
        principal.require_user_access(job.requested_by, parent_of=parent_links(engine, principal))
    return svc.status(job_id)


@router.get("/v1/generations")
def list_generations(
    engine: EngineDep,
    principal: PrincipalDep,
    status_: Annotated[
        Literal["queued", "running", "done", "failed", "cancelled"] | None,
        Query(alias="status"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Newest jobs (service, admin and analyst keys) and counts per status."""
    principal.require(ROLE_SERVICE, ROLE_ADMIN, ROLE_ANALYST)
    svc = engine.generation
    return {
        "counts": svc.queue.counts(),
        "jobs": [j.to_dict() for j in svc.queue.list_jobs(status=status_, limit=limit)],
    }


@router.get("/v1/users/{user_id}/cameo-consent")
def get_consent(user_id: UserId, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """The user's cameo consent: the audience chosen, the one in effect now (``none`` when
    never given, revoked, or a teen's consent awaiting a parent's approval)."""
    principal.require_user_access(user_id, parent_of=parent_links(engine, principal))
    engine.require_user(user_id)
    consent = engine.generation.consents.get(user_id)
    return consent.to_dict() if consent is not None else no_consent(user_id)


def _require_own_choice(principal: Principal, user_id: int) -> None:
    """Consent is the person's own: their key, or the app's service key relaying it."""
    if principal.role == ROLE_SERVICE:
        return
    if principal.role in (ROLE_USER, ROLE_PARENT) and principal.user_id == user_id:
        return
    if principal.role == ROLE_PARENT:
        msg = (
            "only the teen can give cameo consent; a linked parent approves it with "
            f"POST /v1/parental/children/{user_id}/cameo-consent/approval, or revokes it"
        )
    else:
        msg = "cameo consent is given by the person themself (their key or the app's service key)"
    raise HTTPException(status.HTTP_403_FORBIDDEN, detail=msg)


@router.put(
    "/v1/users/{user_id}/cameo-consent",
    responses=errors(
        403,
        422,
        why={
            403: "not the person's own key (nor the service key)",
            422: "not allowed by the policy (e.g. 'everyone' for a teen)",
        },
    ),
)
def put_consent(
    user_id: UserId, body: ConsentIn, engine: EngineDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Choose who may see and use your likeness: ``none``, ``friends`` (mutual follows) or
    ``everyone``. A teen may choose at most ``friends``; it takes effect once a linked parent
    approves it. Clips showing you reach only that audience, on pages and at ``/media``."""
    _require_own_choice(principal, user_id)
    engine.require_user(user_id)
    try:
        return engine.generation.consents.grant(user_id, body.audience).to_dict()
    except ConsentError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc


@router.delete("/v1/users/{user_id}/cameo-consent")
def revoke_consent(user_id: UserId, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """Revoke cameo consent (the person, the service key, an admin or a linked parent): open
    jobs with the cameo are cancelled and clips showing the user leave every other feed from
    the next page."""
    if principal.role != ROLE_ADMIN:
        principal.require_user_access(user_id, parent_of=parent_links(engine, principal))
    engine.require_user(user_id)
    return engine.generation.revoke_consent(user_id)


@router.post("/v1/admin/rights-optouts", status_code=status.HTTP_201_CREATED, responses=errors(422))
def register_optout(body: OptOutIn, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """Register a holder's names (admin): matching prompts are refused and matching clips are
    filtered from feeds from the next page."""
    principal.require(ROLE_ADMIN)
    try:
        items = engine.generation.optouts.register(body.holder, body.names, kind=body.kind)
    except ValueError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    return {"registered": [o.to_dict() for o in items], "kinds": OPTOUT_KINDS}


@router.get("/v1/admin/rights-optouts")
def list_optouts(engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """Registered names (admin and analyst keys)."""
    principal.require(ROLE_ADMIN, ROLE_ANALYST)
    return {"optouts": [o.to_dict() for o in engine.generation.optouts.active()]}


@router.delete(
    "/v1/admin/rights-optouts/{optout_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(404, why={404: "no such opt-out"}),
)
def remove_optout(
    optout_id: Annotated[str, Path(max_length=64)], engine: EngineDep, principal: PrincipalDep
) -> None:
    """Withdraw one registered name (admin)."""
    principal.require(ROLE_ADMIN)
    if not engine.generation.optouts.remove(optout_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no opt-out {optout_id!r}")


# Rights holders, protected people and the review queue live in their own module.
router.include_router(trust_router)
