"""GET /healthz, /livez, /readyz: probes for load balancers and people (public, no key)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.http.deps import EngineDep
from api.http.scrub import scrub_paths

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(engine: EngineDep) -> dict[str, Any]:
    """Liveness plus what is degraded (index, model). Public, so error strings carry no
    filesystem paths (the server log has them). Kept for compatibility: probes should use
    ``/livez`` and ``/readyz``."""
    return dict(scrub_paths(engine.health()))


@router.get("/livez")
async def livez() -> dict[str, str]:
    """The process answers (an event-loop round trip; nothing else is checked, so a slow store
    never gets a live server restarted)."""
    return {"status": "alive"}


@router.get(
    "/readyz",
    responses={503: {"description": "not ready: the body names the parts that are not"}},
)
def readyz(request: Request) -> JSONResponse:
    """Whether to send this server traffic: 200 when ready (parts that serve degraded are
    named in ``degraded``), 503 while starting, while the concept catalogue is built or when
    the store does not answer. (On shutdown the server stops listening at once, so a probe
    fails while in-flight requests finish.)"""
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        body: dict[str, Any] = {
            "ready": False,
            "parts": {},
            "not_ready": ["engine"],
            "degraded": [],
        }
    else:
        body = dict(scrub_paths(engine.readiness()))
    return JSONResponse(body, status_code=200 if body["ready"] else 503)
