"""What every request passes before the app reads its body: the caller's key and rate limits
(:class:`AuthGateMiddleware`) and the body size, counted as it streams
(:class:`BodyLimitMiddleware`). Both are pure ASGI middleware (no per-request task group).

Without them a body was read whole before authentication and the size limit looked only at
``Content-Length``, so one chunked upload without a key could grow the server by hundreds of
MiB (docs/security.md).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http.auth import PUBLIC_PATHS, PUBLIC_TAG, Principal
from api.http.deps import (
    AUTHENTICATED_STATE,
    authenticate_local,
    bearer_key,
    cached_key,
    check_throttle,
    client_address,
    lookup_key,
    rate_limit,
    reject_key,
)
from api.http.local_access import LOCAL_TOKEN_HEADER
from api.http.ratelimit import FailedAuthThrottle

logger = logging.getLogger(__name__)


class BodyTooLargeError(HTTPException):
    """A request body over the limit (raised from ``receive`` as the bytes arrive)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"body over {limit} bytes; send smaller batches",
        )


class BodyLimitMiddleware:
    """Answers 413 to a request whose body is over ``max_body_bytes``.

    A ``Content-Length`` over the limit is refused before anything is read (400 when it is not
    a number); otherwise the bytes are counted as they stream in, and the first chunk that goes
    over the limit stops the reading with :class:`BodyTooLargeError` (413), so a chunked body
    costs at most the limit plus one chunk of memory.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_body_bytes
            except ValueError:
                await JSONResponse({"detail": "invalid Content-Length"}, status_code=400)(
                    scope, receive, send
                )
                return
            if too_big:
                await _answer(scope, receive, send, BodyTooLargeError(self.max_body_bytes))
                return
        limit = self.max_body_bytes
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLargeError as exc:  # read outside a route (routes answer it themselves)
            if started:
                raise
            await _answer(scope, receive, send, exc)


@dataclass(frozen=True)
class _Operation:
    pattern: re.Pattern[str]
    method: str
    public: bool


def _operations(app: FastAPI) -> list[_Operation]:
    """Every documented operation as a path regex, in the order the router tries them."""
    out: list[_Operation] = []
    for template, ops in app.openapi().get("paths", {}).items():
        regex = re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template))
        pattern = re.compile(f"^{regex}$")
        for method, op in ops.items():
            public = template in PUBLIC_PATHS or PUBLIC_TAG in (op.get("tags") or [])
            out.append(_Operation(pattern, method.upper(), public))
    return out


class AuthGateMiddleware:
    """Authenticates and rate-limits a request to a documented, non-public operation before
    the app (or anything else) reads its body.

    A missing or unknown key is answered 401, an address over its failed-authentication budget
    or a key over its rate limit 429 (``Retry-After``), none of them reading a byte of the
    body. The caller is left on ``request.state`` for :func:`api.deps.get_principal`, which
    applies the route policy. Requests the gate does not recognise (undocumented paths, wrong
    methods) go on to the router, where the app-wide dependency still authenticates them.

    Parameters
    ----------
    app
        The next ASGI app.
    fastapi_app
        The FastAPI app: its OpenAPI paths say which operations are public, its state holds
        the engine, the rate limiter and the failed-authentication throttle.
    """

    def __init__(self, app: ASGIApp, *, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self._ops: list[_Operation] | None = None

    def _needs_key(self, method: str, path: str) -> bool:
        if self._ops is None:
            self._ops = _operations(self.fastapi_app)
        method = "GET" if method == "HEAD" else method
        for op in self._ops:
            if op.method == method and op.pattern.match(path):
                return not op.public
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        root = scope.get("root_path") or ""
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        engine = getattr(self.fastapi_app.state, "engine", None)
        if engine is None or not self._needs_key(scope["method"], path):
            await self.app(scope, receive, send)
            return
        state = self.fastapi_app.state
        try:
            headers = Headers(scope=scope)
            principal = await authenticate_async(
                engine,
                headers.get("authorization"),
                address=client_address(scope),
                throttle=getattr(state, "auth_throttle", None),
                local_token=headers.get(LOCAL_TOKEN_HEADER),
                expected_local_token=getattr(state, "local_token", None),
            )
            rate_limit(getattr(state, "rate_limiter", None), principal)
        except HTTPException as exc:
            await _answer(scope, receive, send, exc)
            return
        scope.setdefault("state", {})[AUTHENTICATED_STATE] = principal
        await self.app(scope, receive, send)


async def authenticate_async(
    engine: Any,
    authorization: str | None,
    *,
    address: str,
    throttle: FailedAuthThrottle | None,
    local_token: str | None = None,
    expected_local_token: str | None = None,
) -> Principal:
    """:func:`api.deps.authenticate` without blocking the event loop: a cached key is checked
    here, an uncached one is looked up in a worker thread (a local token needs no lookup)."""
    if local_token is not None:
        return authenticate_local(
            local_token, expected_local_token, address=address, throttle=throttle
        )
    key = bearer_key(authorization)
    check_throttle(throttle, address)
    hit, principal = cached_key(key)
    if not hit:
        principal = await run_in_threadpool(lookup_key, engine, key)
    if principal is None:
        reject_key(throttle, address)
    return principal


async def _answer(scope: Scope, receive: Receive, send: Send, exc: HTTPException) -> None:
    await JSONResponse(
        {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers or None
    )(scope, receive, send)
