"""GET /healthz."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.http.deps import EngineDep
from api.http.scrub import scrub_paths

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(engine: EngineDep) -> dict[str, Any]:
    """Liveness plus what is degraded (index, model). Public, so error strings carry no
    filesystem paths (the server log has them)."""
    return dict(scrub_paths(engine.health()))
