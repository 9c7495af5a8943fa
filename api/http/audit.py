"""The audit log of admin actions (table ``audit_log``, migration 7).

Every state-changing request made with an ``admin`` key is recorded by the middleware that
:func:`install` adds (route template, path parameters, response status). A route that wants a
richer entry calls :func:`record` itself; the middleware then leaves that request alone.

Entries name users only through :func:`pseudonym` where the user is being erased, so an
erasure leaves no trace of the raw id (see :mod:`storage.erasure`).
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http.auth import READ_METHODS, ROLE_ADMIN, Principal
from storage.store import Store, utcnow

logger = logging.getLogger(__name__)


def record(
    store: Store,
    *,
    principal: Principal | None,
    action: str,
    target: str = "",
    details: dict[str, Any] | None = None,
    status: int | None = None,
    request: Request | None = None,
) -> str:
    """Append one audit entry and return its id.

    Parameters
    ----------
    store
        The store holding ``audit_log``.
    principal
        Who acted (``None`` for the CLI or a job).
    action
        What was done, e.g. ``"DELETE /v1/users/{user_id}"`` or ``"experiment.start"``.
    target
        What it was done to (an experiment name, a model version, a user pseudonym).
    details
        JSON-able extra facts.
    status
        The HTTP status answered, when known.
    request
        The request, so the middleware does not record it a second time.
    """
    audit_id = uuid.uuid4().hex
    with store.write() as cur:
        cur.execute(
            "INSERT INTO audit_log (audit_id, at_ts, key_id, role, actor_user_id, action, target,"
            " details, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                audit_id,
                utcnow(),
                principal.key_id if principal else None,
                principal.role if principal else "system",
                principal.user_id if principal else None,
                action,
                target,
                json.dumps(details or {}, default=str),
                status,
            ],
        )
    if request is not None:
        request.state.audited = True
    return audit_id


def install(app: FastAPI) -> None:
    """Record every state-changing request of an ``admin`` key, before its answer is sent."""
    app.add_middleware(AuditMiddleware)


class AuditMiddleware:
    """Pure ASGI middleware (no per-request task group, unlike ``@app.middleware``): when the
    response of an admin's state-changing request starts, the entry is written, then the
    response goes out, so a client that reads the log after its answer finds the entry."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in READ_METHODS:
            await self.app(scope, receive, send)
            return

        async def send_after_audit(message: Message) -> None:
            if message["type"] == "http.response.start":
                await _audit(Request(scope), int(message["status"]))
            await send(message)

        await self.app(scope, receive, send_after_audit)


async def _audit(request: Request, status: int) -> None:
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None or principal.role != ROLE_ADMIN:
        return
    if getattr(request.state, "audited", False):
        return
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        return
    route = request.scope.get("route")
    template = str(getattr(route, "path", request.url.path))
    try:
        await run_in_threadpool(
            record,
            engine.store,
            principal=principal,
            action=f"{request.method} {template}",
            target=json.dumps(dict(request.path_params), default=str),
            status=status,
        )
    except Exception:  # the action happened; a failed audit write must be seen, not hidden
        logger.exception("audit write failed for %s %s", request.method, template)


def recent(store: Store, *, limit: int = 100) -> list[dict[str, Any]]:
    """The newest audit entries, newest first."""
    df = store.query("SELECT * FROM audit_log ORDER BY at_ts DESC LIMIT ?", [limit])
    return df.to_dicts()
