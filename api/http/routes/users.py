"""DELETE /v1/users/{user_id}: erase a user everywhere, in two steps; GET /v1/admin/audit-log."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from api.http import audit
from api.http.auth import ROLE_ADMIN, ROLE_USER, Principal
from api.http.deps import EngineDep, PrincipalDep, fence_exempt, forget_cached_keys
from api.http.errors import errors
from pipelines.serving.engine import Engine
from pipelines.serving.erasure import erase_user
from storage.fence import FenceBusyError

router = APIRouter(prefix="/v1", tags=["users"])

UserId = Annotated[int, Path(ge=0, le=2**62, description="the user to erase")]
# How long a confirmation token works.
CONFIRM_TTL_S = 15 * 60
# What an erasure removes (said in the first step's answer).
ERASES = (
    "account, settings and API keys",
    "data controls and the city you set",
    "events, impressions, surveys, moods, governor settings and usage",
    "follows, blocks and parental links",
    "cameo consent and generation jobs",
    "clips you made or appear in, remixes of them, their vectors and media files",
    "your id in the audit log (replaced by a keyed pseudonym)",
)


def _confirm_sig(engine: Engine, user_id: int, key_id: str, expires: int) -> str:
    msg = f"{user_id}|{key_id}|{expires}".encode()
    return hmac.new(engine.secret_for("erasure-confirm"), msg, hashlib.sha256).hexdigest()[:32]


def confirmation_token(engine: Engine, user_id: int, key_id: str, expires: int) -> str:
    """A token that confirms erasing ``user_id``, for the key ``key_id``, until ``expires``."""
    return f"{expires}.{_confirm_sig(engine, user_id, key_id, expires)}"


def _token_ok(engine: Engine, user_id: int, key_id: str, token: str) -> bool:
    expires_s, _, sig = token.partition(".")
    if not expires_s.isdigit() or int(expires_s) < time.time():
        return False
    return hmac.compare_digest(sig, _confirm_sig(engine, user_id, key_id, int(expires_s)))


@router.delete(
    "/users/{user_id}",
    status_code=status.HTTP_200_OK,
    responses={
        202: {"description": "step 1: nothing erased yet; confirm with the token given"},
        **errors(
            400,
            403,
            404,
            503,
            why={
                400: "the confirmation token is invalid, expired or another key's",
                403: "not this user's key nor an admin key",
                404: "no such user",
                503: "the user's in-flight work did not end in time; retry",
            },
        ),
    },
)
@fence_exempt
async def delete_user(
    user_id: UserId,
    request: Request,
    response: Response,
    engine: EngineDep,
    principal: PrincipalDep,
    confirm: Annotated[
        str | None,
        Query(max_length=80, description="the token step 1 returned (step 2: erase)"),
    ] = None,
) -> dict[str, Any]:
    """Erase the user, in two steps, so that it is never done by accident.

    **Step 1** (no ``confirm``): answers ``202`` with a ``confirm_token`` valid for 15 minutes,
    for the key that asked only. Nothing is erased.

    **Step 2** (``?confirm=<token>``): erases the account, settings, keys, events, surveys,
    moods, follows, blocks, parental links, cameo consent, generation jobs, the clips the user
    made or appears in (and remixes of them) with their vectors and media files, and the
    serving state; the database file is rewritten and the vector index vacuumed so the bytes
    are gone. Irreversible; recorded in the audit log under a keyed pseudonym. Pages and
    requests for the user that are in flight finish first; new ones are refused.
    """
    principal.require(ROLE_ADMIN, ROLE_USER)
    principal.require_user_access(user_id)
    engine.require_user(user_id)
    if confirm is None:
        expires = int(time.time()) + CONFIRM_TTL_S
        response.status_code = status.HTTP_202_ACCEPTED
        return {
            "status": "confirmation_required",
            "user_id": user_id,
            "erases": list(ERASES),
            "confirm_token": confirmation_token(engine, user_id, principal.key_id, expires),
            "expires_at": datetime.fromtimestamp(expires, UTC).isoformat(),
            "confirm_with": f"DELETE /v1/users/{user_id}?confirm=<confirm_token>",
        }
    if not _token_ok(engine, user_id, principal.key_id, confirm):
        msg = (
            "the confirmation token is invalid, expired or was given to another key; "
            f"ask for a new one with DELETE /v1/users/{user_id} (no confirm)"
        )
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=msg)
    try:
        report = await run_in_threadpool(erase_user, engine, user_id)
    except FenceBusyError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc), headers={"Retry-After": "5"}
        ) from exc
    forget_cached_keys()
    out = report.as_dict()
    alias = engine.pseudonym(user_id)
    await run_in_threadpool(
        audit.record,
        engine.store,
        # The actor's user id would be the erased id when users erase themselves.
        principal=Principal(principal.key_id, principal.role, None)
        if principal.user_id == user_id
        else principal,
        action="user.erase",
        target=alias,
        details=out,
        status=200,
        request=request,
    )
    return {"status": "erased", "erased": alias, **out}


@router.get("/admin/audit-log")
def audit_log(
    engine: EngineDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The newest admin actions (admin and analyst keys)."""
    principal.require(ROLE_ADMIN, "analyst")
    return {"entries": audit.recent(engine.store, limit=limit)}
