"""API keys over HTTP (``admin``): create one (shown once), list them (never their hashes),
revoke one (refused from the next request on).

What ``steerfeed keys create|list|revoke`` do; beside a running server on the embedded store
those commands call these routes (api/http/local_access.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel, ConfigDict, Field

from api.http.auth import ROLE_ADMIN, ROLE_PARENT, ROLE_USER
from api.http.deps import EngineDep, PrincipalDep, forget_cached_keys
from api.http.errors import errors
from storage.store import ROLES

router = APIRouter(prefix="/v1/admin/keys", tags=["keys"])

KeyId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")]
#: Roles whose key acts for one user, named by ``user_id``.
_USER_ROLES = (ROLE_USER, ROLE_PARENT)


class KeyIn(BaseModel):
    """A key to create: its role, and for a ``user`` or ``parent`` key the user it acts for."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(max_length=32, description=f"one of: {', '.join(ROLES)}")
    user_id: int | None = Field(default=None, ge=0, le=2**62)


class KeyOut(BaseModel):
    """A key as listed: never its secret or hash."""

    key_id: str
    role: str
    user_id: int | None
    created_at: datetime
    revoked: bool


class CreatedKeyOut(BaseModel):
    """A new key: ``key`` is shown this once (only its hash is stored)."""

    key: str
    key_id: str
    role: str
    user_id: int | None


def _check_key_request(body: KeyIn) -> None:
    """422 for an unknown role, a user/parent key without ``user_id``, or a ``user_id`` on a
    key that acts for no single user."""
    if body.role not in ROLES:
        msg = f"unknown role {body.role!r}; valid: {', '.join(ROLES)}"
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=msg)
    if body.role in _USER_ROLES and body.user_id is None:
        msg = f"a {body.role!r} key acts for one user: send user_id (CLI: --user-id N)"
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=msg)
    if body.role not in _USER_ROLES and body.user_id is not None:
        msg = f"a {body.role!r} key acts for no single user: drop user_id"
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=msg)


@router.post("", status_code=status.HTTP_201_CREATED, responses=errors(422))
def create_key(body: KeyIn, engine: EngineDep, principal: PrincipalDep) -> CreatedKeyOut:
    """Create a key; the answer holds it once (only its hash is stored)."""
    principal.require(ROLE_ADMIN)
    _check_key_request(body)
    key = engine.store.create_api_key(body.role, user_id=body.user_id)
    return CreatedKeyOut(key=key, key_id=key.split("_")[1], role=body.role, user_id=body.user_id)


@router.get("")
def list_keys(engine: EngineDep, principal: PrincipalDep) -> dict[str, list[KeyOut]]:
    """Every key, oldest first: id, role, user, when it was made, whether it is revoked."""
    principal.require(ROLE_ADMIN)
    return {"keys": [KeyOut(**k) for k in engine.store.list_api_keys()]}


@router.delete("/{key_id}", responses=errors(404, why={404: "unknown key"}))
def revoke_key(key_id: KeyId, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """Revoke a key; requests with it are refused (401) from now on. Revoking a revoked key
    changes nothing (``already_revoked``)."""
    principal.require(ROLE_ADMIN)
    revoked_now = engine.store.revoke_api_key(key_id)  # unknown id: UnknownEntityError, 404
    # The key may sit in the lookup cache as valid; a revoked key must not pass even once more.
    forget_cached_keys()
    return {"key_id": key_id, "revoked": True, "already_revoked": not revoked_now}
