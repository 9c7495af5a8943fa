"""GET /healthz, /livez, /readyz: probes for load balancers and people (public, no key)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.http.deps import EngineDep
from api.http.scrub import scrub_paths

router = APIRouter(tags=["health"])


class ReadinessOut(BaseModel):
    """The readiness probe's answer (the same body with 200 and 503)."""

    ready: bool = Field(description="whether to send this server traffic")
    parts: dict[str, str] = Field(
        description="store, index, model, concepts: ok, degraded: why, unavailable: why, or "
        "the concept catalogue's state (building, ready, stale, empty)"
    )
    not_ready: list[str] = Field(description="the parts that make the server not ready")
    degraded: list[str] = Field(description="parts that serve degraded; the server stays ready")


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
    response_model=ReadinessOut,
    responses={503: {"model": ReadinessOut, "description": "not ready: `not_ready` names why"}},
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
