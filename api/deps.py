"""FastAPI dependencies: the engine and the authenticated caller (swap in tests with
``app.dependency_overrides``).

Every non-public route is authenticated, rate limited and checked against the route policy
(:func:`api.auth.check_route_policy`) by :func:`enforce_auth`, which ``create_app`` installs as
an app-wide dependency; routes then ask for :data:`PrincipalDep` and add their own checks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request, status

from api.auth import PUBLIC_PATHS, PUBLIC_TAG, ROLE_PARENT, Principal, check_route_policy
from api.ratelimit import RateLimiter
from pipelines.engine import Engine
from storage.store import hash_key

_KEY_CACHE_TTL_S = 30.0
# Keyed by the key's hash, so raw keys are never held after the request.
_key_cache: dict[str, tuple[float, Principal | None]] = {}
_key_lock = threading.Lock()


def get_engine(request: Request) -> Engine:
    """The engine opened in the app's lifespan."""
    engine: Engine | None = getattr(request.app.state, "engine", None)
    if engine is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="engine is starting")
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def _authenticate(engine: Engine, authorization: str | None) -> Principal:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing API key: send 'Authorization: Bearer <key>' "
            "(create one with 'steerfeed keys create --role ROLE')",
            headers={"WWW-Authenticate": "Bearer"},
        )
    key = authorization[7:].strip()
    digest = hash_key(key)
    now = time.monotonic()
    with _key_lock:
        hit = _key_cache.get(digest)
    if hit is None or now - hit[0] > _KEY_CACHE_TTL_S:
        found = engine.store.lookup_api_key(key)
        principal = Principal(*found) if found else None
        with _key_lock:
            _key_cache[digest] = (now, principal)
    else:
        principal = hit[1]
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="unknown or revoked API key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


def _parent_links(engine: Engine, principal: Principal) -> set[int] | None:
    fn = getattr(engine, "children_of", None)
    if fn is None or principal.user_id is None or principal.role != ROLE_PARENT:
        return None
    return set(fn(principal.user_id))


def get_principal(
    request: Request,
    engine: EngineDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    """Authenticate ``Authorization: Bearer <key>``, rate-limit the key and apply the route
    policy; done once per request (the result is kept on ``request.state``)."""
    done: Principal | None = getattr(request.state, "principal", None)
    if done is not None:
        return done
    principal = _authenticate(engine, authorization)
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        wait = limiter.acquire(principal.key_id, principal.role)
        if wait > 0:
            retry = max(1, int(wait + 0.999))
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                detail=f"rate limit for this key exceeded; retry in {retry} s",
                headers={"Retry-After": str(retry)},
            )
    check_route_policy(
        principal,
        method=request.method,
        path=request.url.path,  # the concrete path: prefixes added at include time count too
        params={**request.query_params, **{k: str(v) for k, v in request.path_params.items()}},
        parent_of=_parent_links(engine, principal),
    )
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def is_public_route(request: Request) -> bool:
    """Whether the matched route may be called without a key."""
    route = request.scope.get("route")
    path = str(getattr(route, "path", request.url.path))
    return path in PUBLIC_PATHS or PUBLIC_TAG in (getattr(route, "tags", None) or [])


# Path or query parameters naming a user whose in-flight work the request is.
_FENCED_PARAMS = ("user_id", "child_id")
_FENCE_EXEMPT: set[Callable[..., Any]] = set()


def fence_exempt(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a route that must not count as in-flight work for the user it names (the erasure
    itself, which waits for that work)."""
    _FENCE_EXEMPT.add(endpoint)
    return endpoint


def _fenced_users(request: Request, principal: Principal) -> list[int]:
    """Users a request acts for: its key's own user and any user named in its path or query."""
    route = request.scope.get("route")
    if getattr(route, "endpoint", None) in _FENCE_EXEMPT:
        return []
    ids = [principal.user_id] if principal.user_id is not None else []
    params = {**request.query_params, **request.path_params}
    for name in _FENCED_PARAMS:
        raw = params.get(name)
        if raw is not None and str(raw).isdigit():
            ids.append(int(raw))
    return ids


def enforce_auth(
    request: Request,
    authorization: Annotated[
        str | None, Header(description="'Bearer <API key>'; not needed for /healthz")
    ] = None,
) -> Iterator[None]:
    """App-wide dependency: every route that is not public needs a valid key within its rate
    limit and the route policy, whether or not the route asks for the caller.

    The request then runs as in-flight work of the users it acts for (``storage.fence``): an
    erasure of one of them waits for it, and a request for a user being erased answers 404.
    """
    if is_public_route(request):
        yield
        return
    engine = get_engine(request)
    principal = get_principal(request, engine, authorization)
    with engine.fence.hold(_fenced_users(request, principal)):
        yield


def forget_cached_keys() -> None:
    """Drop cached key lookups (after a key is revoked or its user erased)."""
    with _key_lock:
        _key_cache.clear()
