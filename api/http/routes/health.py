"""GET /healthz."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.http.deps import EngineDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(engine: EngineDep) -> dict[str, Any]:
    """Liveness plus what is degraded (index, model)."""
    return engine.health()
