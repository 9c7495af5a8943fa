"""Experiments admin API: create, list, start, stop and analyse A/B experiments.

Writes need the ``admin`` role; reads and analyses are open to ``analyst`` too.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.http.deps import EngineDep, PrincipalDep
from api.http.errors import errors
from pipelines.experiments.analysis import UnknownMetricError, analyze
from pipelines.experiments.definitions import Experiment, parse_experiment
from pipelines.experiments.errors import ExperimentDefinitionError, StatsInputError
from pipelines.experiments.ope_log import DEFAULT_TARGETS, off_policy_report
from pipelines.experiments.repository import ExperimentRepository, UnknownExperimentError

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])

NameParam = Annotated[str, Path(min_length=1, max_length=128)]


MAX_OVERRIDES_BYTES = 4096
ShortText = Annotated[str, Field(min_length=1, max_length=64)]


class ArmIn(BaseModel):
    """One arm as sent: a name, a weight and at most 50 overrides (4 KiB of JSON)."""

    model_config = ConfigDict(extra="forbid")

    name: ShortText
    weight: float | None = Field(default=None, gt=0.0, le=1e6)
    overrides: dict[ShortText, Any] = Field(default_factory=dict, max_length=50)

    @field_validator("overrides")
    @classmethod
    def _small(cls, v: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(v, separators=(",", ":"), default=str))
        if size > MAX_OVERRIDES_BYTES:
            msg = f"overrides are {size} bytes as JSON; at most {MAX_OVERRIDES_BYTES}"
            raise ValueError(msg)
        return v


class ExperimentIn(BaseModel):
    """An experiment definition (the YAML file's fields), every list and string bounded here;
    the rest is validated by :func:`~pipelines.experiments.definitions.parse_experiment`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    salt: str = Field(min_length=1, max_length=128)
    arms: list[ArmIn] = Field(min_length=1, max_length=20)
    allocation: float | None = Field(default=None, gt=0.0, le=1.0)
    holdback: float | None = Field(default=None, ge=0.0, lt=1.0)
    status: Literal["draft", "running", "stopped"] | None = None
    guardrails: list[ShortText] | None = Field(default=None, max_length=20)
    start: datetime | None = None
    stop: datetime | None = None
    interleave: list[ShortText] | None = Field(default=None, max_length=2)


_NAME_WHY = {404: "unknown experiment"}
_DEF_WHY = "an invalid definition (an unknown override lists the valid ones)"


def _repo(engine: Any) -> ExperimentRepository:
    repo: ExperimentRepository = engine.experiments
    return repo


def _get(repo: ExperimentRepository, name: str) -> Experiment:
    try:
        return repo.get(name)
    except UnknownExperimentError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc


@router.get("")
def list_experiments(engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """Every stored experiment with its status."""
    principal.require("admin", "analyst")
    return {"experiments": _repo(engine).list_all()}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=errors(
        409,
        422,
        why={409: "an experiment of that name exists (send replace=true)", 422: _DEF_WHY},
    ),
)
def create_experiment(
    body: ExperimentIn,
    engine: EngineDep,
    principal: PrincipalDep,
    replace: Annotated[bool, Query(description="replace an existing definition")] = False,
) -> dict[str, Any]:
    """Store a new experiment (status ``draft`` unless the body says otherwise)."""
    principal.require("admin")
    try:
        exp = parse_experiment(body.model_dump(exclude_unset=True), source="request body")
    except ExperimentDefinitionError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    repo = _repo(engine)
    if not replace and exp.name in repo.names():
        msg = f"experiment {exp.name!r} exists; send ?replace=true to replace it"
        raise HTTPException(status.HTTP_409_CONFLICT, detail=msg)
    repo.save(exp)
    return exp.model_dump(mode="json")


@router.get("/off-policy", responses=errors(422))
def off_policy(
    engine: EngineDep,
    principal: PrincipalDep,
    since: Annotated[datetime | None, Query(description="impressions from (ISO, UTC)")] = None,
    until: Annotated[datetime | None, Query(description="impressions before (ISO, UTC)")] = None,
    window_s: Annotated[float, Query(ge=1.0, le=86400.0, description="reward window")] = 1800.0,
    target_rate: Annotated[
        list[Annotated[float, Field(ge=0.0, le=1.0)]] | None,
        Query(max_length=10, description="extra target exploration rates in [0, 1] (at most 10)"),
    ] = None,
    alpha: Annotated[float, Query(gt=0.0, lt=0.5)] = 0.05,
) -> dict[str, Any]:
    """Off-policy estimates (IPS, SNIPS, doubly robust) of the greedy ranker and of explored
    clips from the pages served with exploration on (see ``steerfeed experiments ope``)."""
    principal.require("admin", "analyst")
    start, stop = _naive(since), _naive(until)
    if start is not None and stop is not None and stop <= start:
        raise HTTPException(422, detail="until must be after since")
    targets = dict(DEFAULT_TARGETS)
    for t in target_rate or []:
        if not 0.0 <= t <= 1.0:
            raise HTTPException(422, detail=f"target_rate must lie in [0, 1], got {t}")
        targets[f"rate_{t:g}"] = t
    engine.writer.flush()
    try:
        return off_policy_report(
            engine.store,
            since=start,
            until=stop,
            reward_window_s=window_s,
            targets=targets,
            alpha=alpha,
        )
    except StatsInputError as exc:
        raise HTTPException(422, detail=str(exc)) from exc


def _naive(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


@router.get("/{name}", responses=errors(404, why=_NAME_WHY))
def get_experiment(name: NameParam, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """One experiment's definition."""
    principal.require("admin", "analyst")
    return _get(_repo(engine), name).model_dump(mode="json")


@router.post("/{name}/start", responses=errors(404, why=_NAME_WHY))
def start_experiment(name: NameParam, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """Set the experiment running: users are assigned from the next request on."""
    principal.require("admin")
    repo = _repo(engine)
    _get(repo, name)
    return repo.set_status(name, "running").model_dump(mode="json")


@router.post("/{name}/stop", responses=errors(404, why=_NAME_WHY))
def stop_experiment(name: NameParam, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """Stop the experiment: nobody is assigned any more (the log is kept for analysis)."""
    principal.require("admin")
    repo = _repo(engine)
    _get(repo, name)
    return repo.set_status(name, "stopped").model_dump(mode="json")


@router.get("/{name}/analysis", responses=errors(404, 422, why=_NAME_WHY))
def analyze_experiment(
    name: NameParam,
    engine: EngineDep,
    principal: PrincipalDep,
    alpha: Annotated[float, Query(gt=0.0, lt=0.5)] = 0.05,
    tolerance: Annotated[float, Query(ge=0.0, le=1.0, description="guardrail tolerance")] = 0.05,
    save: Annotated[bool, Query(description="store the report for the dashboard")] = True,
) -> dict[str, Any]:
    """Analyse the experiment from the impression log (intervals, CUPED, SRM, mSPRT,
    guardrails)."""
    principal.require("admin", "analyst")
    repo = _repo(engine)
    exp = _get(repo, name)
    engine.writer.flush()
    try:
        report = analyze(engine.store, exp, alpha=alpha, guardrail_tolerance=tolerance)
    except UnknownMetricError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    if save:
        repo.save_result(name, "analysis", report)
    return report
