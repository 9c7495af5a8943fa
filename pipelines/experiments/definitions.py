"""Typed, validated definitions of A/B experiments, loaded from YAML.

An experiment splits the users it allocates between weighted arms; each arm overrides a few
declared pipeline settings. Example file::

    name: steering-strength-v2
    salt: steer-2025-06
    allocation: 0.2          # share of eligible (non-holdback) users in the experiment
    holdback: 0.05           # global long-term holdback, excluded from ALL experiments
    status: running
    guardrails: [satisfaction, report_rate, teen_minutes]
    start: 2025-06-01T00:00:00Z
    arms:
      - name: control
        weight: 1
      - name: stronger
        weight: 1
        overrides:
          mood_strength: 0.8
          value_weights: {share: 6.0}
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pipelines.experiments.errors import ExperimentDefinitionError
from ranking.overrides import RequestOverrides, overridable_settings

logger = logging.getLogger(__name__)

#: Pipeline settings an arm may override: the fields of
#: :class:`~ranking.overrides.RequestOverrides` (``FeedQuery.overrides``).
OVERRIDABLE_SETTINGS: tuple[str, ...] = overridable_settings()
#: Flat spelling of one value-model weight (``value_weights.<head>: 6``), folded into
#: ``value_weights``.
VALUE_WEIGHT_PREFIX = "value_weights."


def normalize_overrides(arm: str, overrides: Any) -> RequestOverrides:
    """Validate an arm's overrides, folding ``value_weights.<head>`` keys into ``value_weights``.

    Parameters
    ----------
    arm : str
        Name of the arm (for messages).
    overrides : Mapping[str, Any] or RequestOverrides
        Raw overrides (or already typed ones, returned as they are).

    Returns
    -------
    RequestOverrides
        The typed overrides.

    Raises
    ------
    ExperimentDefinitionError
        On an unknown key (the message lists the valid ones), an unknown value head or a value
        of the wrong type or out of range.
    """
    if isinstance(overrides, RequestOverrides):
        return overrides
    if not isinstance(overrides, Mapping):
        msg = f"arm {arm!r}: overrides must be a mapping, got {type(overrides).__name__}"
        raise ExperimentDefinitionError(msg)
    data: dict[str, Any] = {}
    weights: dict[Any, Any] = {}
    for key, value in overrides.items():
        if isinstance(key, str) and key.startswith(VALUE_WEIGHT_PREFIX):
            weights[key[len(VALUE_WEIGHT_PREFIX) :]] = value
        elif key == "value_weights" and isinstance(value, Mapping):
            if not value:
                msg = f"arm {arm!r}: value_weights must be a non-empty mapping head -> weight"
                raise ExperimentDefinitionError(msg)
            weights.update(value)
        else:
            data[key] = value
    if weights:
        data["value_weights"] = weights
    try:
        return RequestOverrides.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'overrides'}: {err['msg']}"
            for err in exc.errors()
        )
        msg = f"arm {arm!r}: {problems}"
        raise ExperimentDefinitionError(msg) from exc


ExperimentStatus = Literal["draft", "running", "stopped"]


def _repeated(values: list[str]) -> list[str]:
    """Values listed more than once, sorted (linear: a long list cannot stall validation)."""
    return sorted(v for v, n in Counter(values).items() if n > 1)


class Arm(BaseModel):
    """One arm of an experiment.

    Attributes
    ----------
    name : str
        Arm name, unique within the experiment (``control`` by convention for the baseline).
    weight : float
        Relative share of the experiment's users; must be > 0 (normalised over the arms).
    overrides : RequestOverrides
        Pipeline settings this arm changes (copied into ``FeedQuery.overrides``); keys among
        :data:`OVERRIDABLE_SETTINGS` (``value_weights.<head>`` keys are folded into
        ``value_weights``). None set for the control arm.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    weight: float = Field(default=1.0, gt=0.0, allow_inf_nan=False)
    overrides: RequestOverrides = Field(default_factory=RequestOverrides)

    @model_validator(mode="before")
    @classmethod
    def _overrides_are_declared(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("overrides") is not None:
            name = str(data.get("name", "?"))
            data = {**data, "overrides": normalize_overrides(name, data["overrides"])}
        return data


class Experiment(BaseModel):
    """An A/B experiment: who is in it, how they are split, and what to watch.

    Attributes
    ----------
    name : str
        Experiment name.
    salt : str
        Hash salt of this experiment's assignment; change it to reshuffle users.
    arms : list[Arm]
        At least one arm, names unique.
    allocation : float
        Share in ``(0, 1]`` of eligible (non-holdback) users who enter the experiment.
    holdback : float
        Share in ``[0, 1)`` of all users kept in the long-term holdback, excluded from every
        experiment; decided by the global holdback salt, not by this experiment's salt.
    status : {'draft', 'running', 'stopped'}
        Only a running experiment assigns users.
    guardrails : list[str]
        Metric names that must not degrade (see
        :func:`~pipelines.experiments.stats.guardrail_verdict`).
    start, stop : datetime or None
        Timezone-aware window in which the experiment assigns users; ``stop`` after ``start``.
    interleave : list[str] or None
        Two arm names ``[a, b]``: makes this an interleaving experiment. Every user in it (each
        arm alike) gets home pages team-draft interleaved from ranker ``a`` (the pipeline's
        scorers under arm ``a``'s overrides) and ranker ``b``; the team of each slot is logged
        and the analysis reports which ranker won more pages
        (:func:`~pipelines.experiments.interleaving_log.interleaving_report`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    salt: str = Field(min_length=1)
    arms: list[Arm] = Field(min_length=1)
    allocation: float = Field(default=1.0, gt=0.0, le=1.0)
    holdback: float = Field(default=0.0, ge=0.0, lt=1.0)
    status: ExperimentStatus = "draft"
    guardrails: list[str] = Field(default_factory=list)
    start: AwareDatetime | None = None
    stop: AwareDatetime | None = None
    interleave: list[str] | None = None

    @field_validator("guardrails")
    @classmethod
    def _guardrails_unique(cls, value: list[str]) -> list[str]:
        if any(not name for name in value):
            msg = "guardrail metric names must be non-empty"
            raise ExperimentDefinitionError(msg)
        dupes = _repeated(value)
        if dupes:
            msg = f"guardrail metrics listed twice: {dupes}"
            raise ExperimentDefinitionError(msg)
        return value

    @model_validator(mode="after")
    def _arms_unique_and_window_ordered(self) -> Experiment:
        names = [arm.name for arm in self.arms]
        dupes = _repeated(names)
        if dupes:
            msg = f"experiment {self.name!r}: arm names must be unique, repeated: {dupes}"
            raise ExperimentDefinitionError(msg)
        if self.interleave is not None:
            pair = self.interleave
            unknown = [a for a in pair if a not in names]
            if len(pair) != 2 or pair[0] == pair[1] or unknown:
                msg = (
                    f"experiment {self.name!r}: interleave must name two different arms, got "
                    f"{pair}; arms: {names}"
                )
                raise ExperimentDefinitionError(msg)
        if self.start is not None and self.stop is not None and self.stop <= self.start:
            msg = (
                f"experiment {self.name!r}: stop {self.stop.isoformat()} is not after "
                f"start {self.start.isoformat()}"
            )
            raise ExperimentDefinitionError(msg)
        return self

    @property
    def arm_names(self) -> list[str]:
        """Arm names in declaration order."""
        return [arm.name for arm in self.arms]

    @property
    def arm_shares(self) -> dict[str, float]:
        """Share of the experiment's users each arm should receive (weights normalised)."""
        total = sum(arm.weight for arm in self.arms)
        return {arm.name: arm.weight / total for arm in self.arms}

    def arm(self, name: str) -> Arm:
        """Return the arm called ``name``.

        Raises
        ------
        ExperimentDefinitionError
            If there is no such arm; the message lists the arms.
        """
        for arm in self.arms:
            if arm.name == name:
                return arm
        msg = f"experiment {self.name!r} has no arm {name!r}; arms: {self.arm_names}"
        raise ExperimentDefinitionError(msg)

    def is_active(self, at: datetime) -> bool:
        """Whether the experiment is running and ``at`` lies in ``[start, stop)``.

        Parameters
        ----------
        at : datetime
            Timezone-aware instant.
        """
        if self.status != "running":
            return False
        if self.start is not None and at < self.start:
            return False
        return not (self.stop is not None and at >= self.stop)


def parse_experiment(data: Mapping[str, Any], *, source: str = "<mapping>") -> Experiment:
    """Validate a mapping into an :class:`Experiment`.

    Parameters
    ----------
    data : Mapping[str, Any]
        Parsed definition (e.g. from YAML).
    source : str, optional
        Where the data came from, for the message.

    Returns
    -------
    Experiment
        The validated experiment.

    Raises
    ------
    ExperimentDefinitionError
        With every validation problem listed.
    """
    if not isinstance(data, Mapping):
        msg = f"{source}: an experiment definition must be a mapping, got {type(data).__name__}"
        raise ExperimentDefinitionError(msg)
    try:
        return Experiment.model_validate(dict(data))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        msg = f"{source}: invalid experiment definition: {problems}"
        raise ExperimentDefinitionError(msg) from exc


def load_experiment(path: str | Path) -> Experiment:
    """Load and validate one experiment from a YAML file.

    Parameters
    ----------
    path : str or Path
        YAML file holding one experiment mapping.

    Returns
    -------
    Experiment
        The validated experiment.

    Raises
    ------
    ExperimentDefinitionError
        If the file is missing, is not valid YAML, or does not validate.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"cannot read experiment file {str(file)!r}: {exc}"
        raise ExperimentDefinitionError(msg) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        msg = f"{file}: not valid YAML: {exc}"
        raise ExperimentDefinitionError(msg) from exc
    experiment = parse_experiment(data, source=str(file))
    logger.info(
        "loaded experiment name=%s arms=%d allocation=%.3f holdback=%.3f status=%s",
        experiment.name,
        len(experiment.arms),
        experiment.allocation,
        experiment.holdback,
        experiment.status,
    )
    return experiment
