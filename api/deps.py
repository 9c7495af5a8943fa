"""FastAPI dependencies: the engine and the authenticated caller (swap in tests with
``app.dependency_overrides``)."""

from __future__ import annotations

import threading
import time
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status

from api.auth import Principal
from pipelines.engine import Engine

_KEY_CACHE_TTL_S = 30.0
_key_cache: dict[str, tuple[float, Principal | None]] = {}
_key_lock = threading.Lock()


def get_engine(request: Request) -> Engine:
    """The engine opened in the app's lifespan."""
    engine: Engine | None = getattr(request.app.state, "engine", None)
    if engine is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="engine is starting")
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def get_principal(
    engine: EngineDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    """Authenticate ``Authorization: Bearer <key>``."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing API key: send 'Authorization: Bearer <key>' "
            "(create one with 'steerfeed keys create --role ROLE')",
            headers={"WWW-Authenticate": "Bearer"},
        )
    key = authorization[7:].strip()
    now = time.monotonic()
    with _key_lock:
        hit = _key_cache.get(key)
    if hit is None or now - hit[0] > _KEY_CACHE_TTL_S:
        found = engine.store.lookup_api_key(key)
        principal = Principal(*found) if found else None
        with _key_lock:
            _key_cache[key] = (now, principal)
    else:
        principal = hit[1]
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="unknown or revoked API key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def forget_cached_keys() -> None:
    """Drop cached key lookups (after a key is revoked)."""
    with _key_lock:
        _key_cache.clear()
