"""FastAPI dependencies: the engine and the authenticated caller (swap in tests with
``app.dependency_overrides``).

Every non-public route is authenticated, rate limited and checked against the route policy
(:func:`api.http.auth.check_route_policy`) by :func:`enforce_auth`, which ``create_app`` installs as
an app-wide dependency; routes then ask for :data:`PrincipalDep` and add their own checks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, NoReturn

from fastapi import Depends, Header, HTTPException, Request, status
from starlette.types import Scope

from api.http.auth import (
    MAX_KEY_CHARS,
    PUBLIC_PATHS,
    PUBLIC_TAG,
    ROLE_PARENT,
    KeyCache,
    Principal,
    check_route_policy,
)
from api.http.local_access import LOCAL_PRINCIPAL, LOCAL_TOKEN_HEADER, local_token_matches
from api.http.ratelimit import FailedAuthThrottle, RateLimiter
from pipelines.serving.engine import Engine
from storage.store import hash_key

_KEY_CACHE_TTL_S = 30.0
# Keyed by the key's hash, so raw keys are never held after the request; bounded, so wrong
# keys cannot grow it (api.auth.KeyCache).
_key_cache = KeyCache(ttl_s=_KEY_CACHE_TTL_S)
#: Where :class:`api.gate.AuthGateMiddleware` leaves the authenticated, rate-limited caller.
AUTHENTICATED_STATE = "authenticated"


def get_engine(request: Request) -> Engine:
    """The engine opened in the app's lifespan."""
    engine: Engine | None = getattr(request.app.state, "engine", None)
    if engine is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="engine is starting")
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def client_address(scope: Scope) -> str:
    """The client's address as the server saw it (the proxy's, behind a proxy)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def bearer_key(authorization: str | None) -> str:
    """The key of an ``Authorization: Bearer <key>`` header (401 when there is none)."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise _unauthorized(
            "missing API key: send 'Authorization: Bearer <key>' "
            "(create one with 'steerfeed keys create --role ROLE')"
        )
    return authorization[7:].strip()


def check_throttle(throttle: FailedAuthThrottle | None, address: str) -> None:
    """429 while ``address`` is over its failed-authentication budget (no key is looked up)."""
    wait = throttle.wait(address) if throttle is not None else 0.0
    if wait > 0:
        retry = max(1, int(wait + 0.999))
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"too many failed authentications from this address; retry in {retry} s",
            headers={"Retry-After": str(retry)},
        )


def cached_key(key: str) -> tuple[bool, Principal | None]:
    """``(True, principal or None)`` when the key's lookup is cached (an over-long key is
    known to be wrong), else ``(False, None)``."""
    if not key or len(key) > MAX_KEY_CHARS:
        return True, None
    return _key_cache.get(hash_key(key), time.monotonic())


def lookup_key(engine: Engine, key: str) -> Principal | None:
    """Look ``key`` up in the store and cache the answer (a blocking database read)."""
    found = engine.store.lookup_api_key(key)
    principal = Principal(*found) if found else None
    _key_cache.put(hash_key(key), principal, time.monotonic())
    return principal


def reject_key(throttle: FailedAuthThrottle | None, address: str) -> NoReturn:
    """Count a failed authentication of ``address`` and answer 401."""
    if throttle is not None:
        throttle.failed(address)
    raise _unauthorized("unknown or revoked API key")


def authenticate_local(
    sent: str,
    expected: str | None,
    *,
    address: str,
    throttle: FailedAuthThrottle | None,
) -> Principal:
    """The caller of a local token (:mod:`api.http.local_access`): ``admin`` when ``sent`` is
    this server's token and ``address`` is loopback; else 401, counted against ``address``."""
    check_throttle(throttle, address)
    if not local_token_matches(sent, expected, address):
        if throttle is not None:
            throttle.failed(address)
        raise _unauthorized(
            f"{LOCAL_TOKEN_HEADER} refused: it is accepted only from this machine (loopback) "
            "and only with the token of the server running now"
        )
    return LOCAL_PRINCIPAL


def authenticate(
    engine: Engine,
    authorization: str | None,
    *,
    address: str,
    throttle: FailedAuthThrottle | None,
    local_token: str | None = None,
    expected_local_token: str | None = None,
) -> Principal:
    """The caller of ``Authorization: Bearer <key>``: 401 without a key or with an unknown
    one (counted against ``address``), 429 while ``address`` is throttled. A request that
    sends a local token (``local_token``) is judged by that alone
    (:func:`authenticate_local`)."""
    if local_token is not None:
        return authenticate_local(
            local_token, expected_local_token, address=address, throttle=throttle
        )
    key = bearer_key(authorization)
    check_throttle(throttle, address)
    hit, principal = cached_key(key)
    if not hit:
        principal = lookup_key(engine, key)
    if principal is None:
        reject_key(throttle, address)
    return principal


def rate_limit(limiter: RateLimiter | None, principal: Principal) -> None:
    """429 with ``Retry-After`` when the key is over its rate limit."""
    if limiter is None:
        return
    wait = limiter.acquire(principal.key_id, principal.role)
    if wait > 0:
        retry = max(1, int(wait + 0.999))
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"rate limit for this key exceeded; retry in {retry} s",
            headers={"Retry-After": str(retry)},
        )


def parent_links(engine: Engine, principal: Principal) -> set[int] | None:
    """Teens linked to a parent key (None for any other key)."""
    if principal.user_id is None or principal.role != ROLE_PARENT:
        return None
    return set(engine.children_of(principal.user_id))


def get_principal(
    request: Request,
    engine: EngineDep,
    authorization: Annotated[str | None, Header(max_length=4096)] = None,
) -> Principal:
    """Authenticate ``Authorization: Bearer <key>``, rate-limit the key and apply the route
    policy; done once per request (the result is kept on ``request.state``). The first two
    steps are usually done already, before the body was read, by
    :class:`api.gate.AuthGateMiddleware`."""
    done: Principal | None = getattr(request.state, "principal", None)
    if done is not None:
        return done
    principal: Principal | None = getattr(request.state, AUTHENTICATED_STATE, None)
    if principal is None:  # a request the gate did not see (it authenticates documented routes)
        principal = authenticate(
            engine,
            authorization,
            address=client_address(request.scope),
            throttle=getattr(request.app.state, "auth_throttle", None),
            local_token=request.headers.get(LOCAL_TOKEN_HEADER),
            expected_local_token=getattr(request.app.state, "local_token", None),
        )
        rate_limit(getattr(request.app.state, "rate_limiter", None), principal)
    check_route_policy(
        principal,
        method=request.method,
        path=request.url.path,  # the concrete path: prefixes added at include time count too
        params={**request.query_params, **{k: str(v) for k, v in request.path_params.items()}},
        parent_of=parent_links(engine, principal),
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
        str | None,
        Header(max_length=4096, description="'Bearer <API key>'; not needed for /healthz"),
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
    _key_cache.clear()
