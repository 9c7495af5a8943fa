"""Jobs over HTTP (``admin``): run one now, in the server, and answer its report.

What ``steerfeed jobs run NAME`` does; beside a running server on the embedded store that
command calls this route. The request waits for the job (a ``train`` can take minutes).
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, status

from api.http.auth import ROLE_ADMIN
from api.http.deps import EngineDep, PrincipalDep
from api.http.errors import errors
from pipelines.serving.jobs import JobContext, JobError, job_table, run_job

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/admin/jobs", tags=["jobs"])

JobName = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]


@router.get("")
def list_jobs(engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """Every job: name, how often the server runs it (seconds; null: on demand), what it does."""
    principal.require(ROLE_ADMIN)
    return {
        "jobs": [
            {"name": s.name, "every_s": s.every_s, "description": s.description}
            for s in job_table(engine.settings).values()
        ]
    }


@router.post("/{name}/run", responses=errors(404, why={404: "unknown job"}))
def run_job_now(name: JobName, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """Run a job now and answer its report: ``ok`` false (with ``message``) when it failed,
    which is still a 200 (the run happened). A run of a job that is running already (the
    scheduler's) waits for it to end first."""
    principal.require(ROLE_ADMIN)
    try:
        report = run_job(name, JobContext(engine))
    except JobError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    logger.info("job %s run over HTTP by key %s ok=%s", name, principal.key_id, report.ok)
    return {
        "name": report.name,
        "ok": report.ok,
        "seconds": round(report.seconds, 2),
        # counts may hold numpy scalars or dates: the CLI prints them the same way
        "counts": json.loads(json.dumps(report.counts, default=str)),
        "message": report.message,
    }
