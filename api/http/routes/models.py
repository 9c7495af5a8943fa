"""Learned ranker models over HTTP: list them (analyst, admin) and roll back (admin).

Promotion runs the promotion gate on the log, a batch job: use ``steerfeed models promote``
or the ``train`` job.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status

from api.http.deps import EngineDep, PrincipalDep
from api.http.errors import errors
from ranking.learned.registry import HAND_WEIGHTED
from ranking.learned.value_model import LearnedModelError

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("")
def list_models(engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """Stored versions with their held-out metrics and gate, and which one serves."""
    principal.require("analyst", "admin")
    models = engine.learned
    reg = models.registry
    try:
        records = reg.records()
        serving = reg.serving_version()
    except LearnedModelError as exc:
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, detail=str(exc)) from exc
    return {
        "serving": serving or HAND_WEIGHTED,
        "health": models.health(),
        "history": reg.history(),
        "models": [
            {
                "version": r.version,
                "serving": r.serving,
                "created_at": r.created_at,
                "n_train": r.n_train,
                "holdout_start": r.holdout_start,
                "metrics": r.metrics,
                "gate": r.meta.get("gate"),
                "feature_names": list(r.feature_names),
            }
            for r in records
        ],
    }


@router.post("/rollback", responses=errors(409, why={409: "nothing to roll back to"}))
def rollback(engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """Serve the previously promoted model again (the hand-weighted scorer if none)."""
    principal.require("admin")
    reg = engine.learned.registry
    try:
        current = reg.serving_version()
        previous = reg.rollback()
    except LearnedModelError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    engine.learned.invalidate()
    return {"rolled_back": current, "serving": previous or HAND_WEIGHTED}
