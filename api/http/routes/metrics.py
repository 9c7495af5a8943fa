"""GET /metrics: Prometheus metrics (docs/operations.md explains each). Operators only."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from api.http.deps import EngineDep, PrincipalDep
from api.http.errors import errors
from pipelines.serving.telemetry.metrics import CONTENT_TYPE_LATEST, render

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
        **errors(403, why={403: "the key is not an analyst or admin key"}),
    },
)
def metrics(engine: EngineDep, principal: PrincipalDep) -> Response:
    """Every metric in the Prometheus text format (all workers' in multiprocess mode), plus
    the serving state read now. Needs an ``analyst`` or ``admin`` key (Prometheus sends it as
    a bearer token: ``authorization: {credentials_file: ...}`` in the scrape config)."""
    principal.require("analyst", "admin")
    return Response(render(engine.metrics_collector), media_type=CONTENT_TYPE_LATEST)
