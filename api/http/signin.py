"""Sign-in for the server-rendered pages (the dashboard, a person's own view): a key from the
``Authorization`` header or from a cookie a login form set, checked with the API's key cache and
failed-authentication throttle; and the pages' shared HTML shell and sign-in form."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse

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


def escape(value: Any) -> str:
    """``value`` as HTML text (quotes too, so it is safe in attributes)."""
    return html.escape(str(value), quote=True)


def html_page(title: str, body: str, *, css: str) -> str:
    """A whole self-contained page: no scripts, no external resources, no favicon request."""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><link rel='icon' href='data:,'><style>{css}</style>"
        f"</head><body>{body}</body></html>"
    )


def sign_in_page(
    title: str, intro: str, action: str, error: str | None, *, css: str, error_class: str
) -> str:
    """The sign-in form posting one ``key`` field to ``action`` (``intro``: trusted HTML)."""
    msg = f"<p class='{error_class}'>{escape(error)}</p>" if error else ""
    return html_page(
        title,
        f"{intro}{msg}<form method='post' action='{escape(action)}'>"
        "<label>API key <input type='password' name='key' autocomplete='off'></label> "
        "<button type='submit'>Sign in</button></form>",
        css=css,
    )


def refused(exc: HTTPException, sign_in: Callable[[str | None], str]) -> HTMLResponse:
    """The sign-in form again with why the key was refused, the refusal's status and its
    ``Retry-After`` (a throttled address)."""
    headers = {k: v for k, v in (exc.headers or {}).items() if k == "Retry-After"}
    return HTMLResponse(
        sign_in(str(exc.detail)), status_code=exc.status_code, headers=headers or None
    )
