"""Analytics endpoints: the named long-term satisfaction reports, the model's calibration and the
report page of ``steerfeed report satisfaction``."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, status
from fastapi.responses import HTMLResponse

from api.http.deps import EngineDep, PrincipalDep
from api.http.errors import errors
from wellbeing.analytics import REPORTS, UnknownReportError, run_report
from wellbeing.report import read_evaluation, report_html

router = APIRouter(prefix="/v1/analytics", tags=["analytics"])


def _jsonable(v: Any) -> Any:
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    return v


@router.get("/reports")
def list_reports(principal: PrincipalDep) -> dict[str, Any]:
    """The named reports (each is SQL over the ``wb_answers`` and ``wb_sessions`` views)."""
    principal.require("analyst", "admin")
    return {
        "reports": [
            {"name": r.name, "title": r.title, "description": r.description}
            for r in REPORTS.values()
        ]
    }


@router.get("/reports/{name}", responses=errors(404, why={404: "unknown report"}))
def get_report(
    name: Annotated[str, Path(max_length=64)], engine: EngineDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Run one named report; rows as JSON objects."""
    principal.require("analyst", "admin")
    try:
        df = run_report(engine.store, name)
    except UnknownReportError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    rows = [{k: _jsonable(v) for k, v in r.items()} for r in df.iter_rows(named=True)]
    return {"name": name, "columns": df.columns, "rows": rows}


@router.get("/satisfaction-model", responses=errors(404, why={404: "no model trained yet"}))
def satisfaction_model(engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """The newest satisfaction model: version, coefficients and held-out calibration."""
    principal.require("analyst", "admin")
    df = engine.store.query(
        "SELECT version, trained_at, metrics FROM satisfaction_models "
        "ORDER BY trained_at DESC LIMIT 1"
    )
    if df.height == 0:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail="no satisfaction model yet; run 'steerfeed jobs run satisfaction'",
        )
    row = df.row(0, named=True)
    return {
        "version": row["version"],
        "trained_at": _jsonable(row["trained_at"]),
        "metrics": json.loads(row["metrics"]),
    }


@router.get("/satisfaction-report", response_class=HTMLResponse)
def satisfaction_report(engine: EngineDep, principal: PrincipalDep) -> HTMLResponse:
    """Every named report with its chart, the model's calibration and, when ``steerfeed eval
    wellbeing`` left one in the data folder, the head comparison: one self-contained HTML page
    (what ``steerfeed report satisfaction`` writes)."""
    principal.require("analyst", "admin")
    evaluation = read_evaluation(engine.settings.storage.data_dir)
    return HTMLResponse(report_html(engine.store, evaluation=evaluation))
