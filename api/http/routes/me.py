"""A person's own view over time as a page: ``GET /me`` (and ``/me/export`` to keep it).

Signed in with the person's own ``user`` key: from the ``Authorization`` header (an app that
embeds the page) or from the HttpOnly cookie ``POST /me/login`` sets from a form. Server
rendered, no JavaScript, no external resources; the same data as
``GET /v1/users/{id}/my-view`` (:mod:`wellbeing.my_view`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Cookie, Header, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from api.http.auth import PUBLIC_TAG, Principal
from api.http.deps import EngineDep
from api.http.errors import ERROR_MEANINGS, errors
from api.http.routes.wellbeing import my_view
from api.http.signin import (
    escape,
    html_page,
    page_principal,
    read_login_key,
    refused,
    sign_in_page,
)
from pipelines.serving.engine import Engine

router = APIRouter(tags=["me", PUBLIC_TAG])

COOKIE = "steerfeed_me_key"
_SIGN_IN: dict[int | str, dict[str, Any]] = {
    code: {"description": f"the sign-in form (HTML): {ERROR_MEANINGS[code]}"}
    for code in (401, 403, 404, 429)
}


_e = escape
_CSS = (
    "body{font:14px system-ui,sans-serif;margin:2em;max-width:60em}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;"
    "padding:.25em .6em;text-align:left}"
    ".bar{background:#2f6fb0;height:.8em;display:inline-block}.err{color:#b00020}"
)


def _page(title: str, body: str) -> str:
    return html_page(title, body, css=_CSS)


def _login_page(error: str | None) -> str:
    return sign_in_page(
        "steerfeed: your view, sign in",
        "<h1>Your time and your feed</h1><p>Sign in with your own API key.</p>",
        "/me/login",
        error,
        css=_CSS,
        error_class="err",
    )


def _principal(
    request: Request, engine: Engine, authorization: str | None, cookie: str | None
) -> Principal:
    principal = page_principal(request, engine, authorization, cookie, roles=("user",))
    if principal.user_id is None:  # a user key always names its user; be explicit anyway
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="a user key names its user")
    engine.require_user(principal.user_id)
    return principal


def render(view: dict[str, Any]) -> str:
    """The view as HTML: minutes per day and week, survey answers, what changed."""
    top = max([float(d["minutes"]) for d in view["minutes_per_day"]] + [1.0])
    days = "".join(
        f"<tr><td>{_e(d['day'])}</td><td>{float(d['minutes']):.0f}</td>"
        f"<td><span class='bar' style='width:{200 * float(d['minutes']) / top:.0f}px'></span></td>"
        "</tr>"
        for d in reversed(view["minutes_per_day"])
    )
    weeks = "".join(
        f"<tr><td>{_e(w['week'])}</td><td>{float(w['minutes']):.0f}</td></tr>"
        for w in reversed(view["minutes_per_week"])
    )
    surveys = (
        "".join(
            f"<tr><td>{_e(s['asked_at'][:10])}</td><td>{_e(s['question'])}</td>"
            f"<td>{_e(s['answer'] if s['status'] == 'answered' else s['status'])}</td></tr>"
            for s in reversed(view["surveys"])
        )
        or "<tr><td colspan='3'>No answers in this period.</td></tr>"
    )
    changes = (
        "".join(
            f"<tr><td>{_e(c['at'][:16].replace('T', ' '))}</td><td>{_e(c['what'])}</td>"
            f"<td>{_e(c['detail'])}</td></tr>"
            for c in reversed(view["changes"])
        )
        or "<tr><td colspan='3'>Nothing changed in this period.</td></tr>"
    )
    goals = (
        "".join(
            f"<tr><td>{_e(g['text'])}</td><td>{int(g['clips_watched'])}</td>"
            f"<td>{_e(g.get('friends_seen', ''))}</td></tr>"
            for g in view.get("goals", [])
        )
        or "<tr><td colspan='3'>No goals: just scrolling.</td></tr>"
    )
    total = sum(float(d["minutes"]) for d in view["minutes_per_day"])
    return _page(
        "steerfeed: your view",
        f"<h1>Your time and your feed</h1><p id='summary'>{total:.0f} minutes over the last "
        f"{view['days']} days ({_e(view['timezone'])}). "
        f"<a href='/me/export' download>Download all of it (JSON)</a></p>"
        "<h2>Your goals</h2><table id='goals'><tr><th>goal</th><th>clips watched toward it"
        f"</th><th>friends seen</th></tr>{goals}</table>"
        "<h2>Minutes per week</h2><table id='weeks'><tr><th>week</th><th>minutes</th></tr>"
        f"{weeks}</table>"
        "<h2>Minutes per day</h2><table id='days'><tr><th>day</th><th>minutes</th><th></th></tr>"
        f"{days}</table>"
        "<h2>Your survey answers</h2><table id='surveys'><tr><th>asked</th><th>question</th>"
        f"<th>answer</th></tr>{surveys}</table>"
        "<h2>What changed your feed</h2><table id='changes'><tr><th>when (UTC)</th>"
        f"<th>what</th><th>detail</th></tr>{changes}</table>",
    )


def _refused(exc: HTTPException) -> HTMLResponse:
    return refused(exc, _login_page)


@router.get("/me", response_class=HTMLResponse, responses=_SIGN_IN)
def my_view_page(
    request: Request,
    engine: EngineDep,
    authorization: Annotated[str | None, Header(max_length=4096)] = None,
    steerfeed_me_key: Annotated[str | None, Cookie(max_length=256)] = None,
    days: Annotated[int, Query(ge=1, le=366)] = 28,
) -> HTMLResponse:
    """The signed-in person's own view (or the sign-in form)."""
    if not authorization and not steerfeed_me_key:
        return HTMLResponse(_login_page(None))
    try:
        p = _principal(request, engine, authorization, steerfeed_me_key)
    except HTTPException as exc:
        return _refused(exc)
    return HTMLResponse(render(my_view(engine, int(p.user_id or 0), days)))


@router.get(
    "/me/export",
    responses={
        200: {"description": "the view as a JSON file (a year)"},
        **errors(401, 403, 404, 429),
    },
)
def my_view_export(
    request: Request,
    engine: EngineDep,
    authorization: Annotated[str | None, Header(max_length=4096)] = None,
    steerfeed_me_key: Annotated[str | None, Cookie(max_length=256)] = None,
) -> JSONResponse:
    """The signed-in person's view over the last year, as a file."""
    p = _principal(request, engine, authorization, steerfeed_me_key)
    uid = int(p.user_id or 0)
    return JSONResponse(
        my_view(engine, uid, 366),
        headers={"Content-Disposition": f'attachment; filename="steerfeed-my-view-{uid}.json"'},
    )


@router.post(
    "/me/login",
    responses={
        303: {"description": "signed in: the key is set as a cookie; on to /me"},
        **{
            c: {"description": f"the sign-in form (HTML): {ERROR_MEANINGS[c]}"}
            for c in (401, 403, 413, 422, 429)
        },
    },
)
async def my_view_login(request: Request, engine: EngineDep) -> Response:
    """Check a user key from the sign-in form; set it as an HttpOnly cookie."""
    key, problem = await read_login_key(request)
    if problem is not None:
        return HTMLResponse(_login_page(problem.message), status_code=problem.status)
    try:
        await run_in_threadpool(_principal, request, engine, f"Bearer {key}", None)
    except HTTPException as exc:
        return _refused(exc)
    resp = RedirectResponse("/me", status_code=status.HTTP_303_SEE_OTHER)
    resp.set_cookie(COOKIE, key, httponly=True, samesite="strict", max_age=8 * 3600)
    return resp
