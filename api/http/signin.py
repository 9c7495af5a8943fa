"""Sign-in for the server-rendered pages (the dashboard, a person's own view): a key from the
``Authorization`` header or from a cookie a login form set, checked with the API's key cache and
failed-authentication throttle."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

from fastapi import Request

from api.http.auth import Principal
from api.http.deps import authenticate, client_address
from pipelines.serving.engine import Engine

#: The login form holds one key field; a longer body is not a login.
MAX_LOGIN_BODY_BYTES = 2048


@dataclass(frozen=True)
class LoginProblem:
    """Why a login form was refused before its key was checked."""

    status: int
    message: str


def page_principal(
    request: Request,
    engine: Engine,
    authorization: str | None,
    cookie: str | None,
    *,
    roles: tuple[str, ...],
) -> Principal:
    """Authenticate a page's caller from the header or the cookie, requiring one of ``roles``
    (401, 403, or 429 while the caller's address is throttled)."""
    if not (authorization and authorization.lower().startswith("bearer ")) and cookie:
        authorization = f"Bearer {cookie.strip()}"
    principal = authenticate(
        engine,
        authorization or "Bearer ",
        address=client_address(request.scope),
        throttle=getattr(request.app.state, "auth_throttle", None),
    )
    principal.require(*roles)
    return principal


async def read_login_key(request: Request) -> tuple[str, LoginProblem | None]:
    """The key a login form posted (read in bounded chunks), or why the form is refused."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_LOGIN_BODY_BYTES:
            return "", LoginProblem(413, f"a login form is at most {MAX_LOGIN_BODY_BYTES} bytes")
    key = (parse_qs(raw.decode("utf-8", errors="replace")).get("key") or [""])[0].strip()
    if not key or len(key) > 256:
        return "", LoginProblem(422, "enter an API key (1-256 characters)")
    return key, None
