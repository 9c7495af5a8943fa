"""DELETE /v1/users/{user_id}: erase a user everywhere; GET /v1/admin/audit-log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from api.http import audit
from api.http.auth import ROLE_ADMIN, ROLE_USER, Principal
from api.http.deps import EngineDep, PrincipalDep, forget_cached_keys
from pipelines.serving.erasure import erase_user
from storage.erasure import pseudonym

router = APIRouter(prefix="/v1", tags=["users"])

UserId = Annotated[int, Path(ge=0, le=2**62, description="the user to erase")]


@router.delete(
    "/users/{user_id}",
    responses={403: {"description": "not this user's key nor an admin key"}},
)
async def delete_user(
    user_id: UserId, request: Request, engine: EngineDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Erase the user: events, surveys, settings, moods, follows, blocks, keys, the clips they
    authored or appear in (cameos), their vectors and serving state. Irreversible; recorded in
    the audit log under a pseudonym."""
    principal.require(ROLE_ADMIN, ROLE_USER)
    principal.require_user_access(user_id)
    engine.require_user(user_id)
    engine.writer.flush()
    report = await run_in_threadpool(erase_user, engine, user_id)
    forget_cached_keys()  # the user's keys are gone from the store
    out = report.as_dict()
    await run_in_threadpool(
        audit.record,
        engine.store,
        # The actor's user id would be the erased id when users erase themselves.
        principal=Principal(principal.key_id, principal.role, None)
        if principal.user_id == user_id
        else principal,
        action="user.erase",
        target=pseudonym(user_id),
        details=out,
        status=200,
        request=request,
    )
    return {"erased": pseudonym(user_id), **out}


@router.get("/admin/audit-log")
def audit_log(
    engine: EngineDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The newest admin actions (admin and analyst keys)."""
    principal.require(ROLE_ADMIN, "analyst")
    return {"entries": audit.recent(engine.store, limit=limit)}
