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
import re
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

logger = logging.getLogger(__name__)

#: Pipeline settings an arm may override (the ``FeedQuery.overrides`` keys the components read),
#: with the type of value each takes. ``value_weights`` is a mapping head -> weight.
OVERRIDABLE_SETTINGS: dict[str, type] = {
    "value_weights": dict,
    "ranker_model": str,
    "mood_strength": float,
    "governor_taper": float,
    "satisfaction_weight": float,
    "exploration_rate": float,
}
#: Flat spelling of one value-model weight (``value_weights.<head>: 6``), folded into
#: ``value_weights``.
VALUE_WEIGHT_PREFIX = "value_weights."
_HEAD_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_VALID_KEYS_TEXT = ", ".join([*sorted(OVERRIDABLE_SETTINGS), f"{VALUE_WEIGHT_PREFIX}<head>"])
#: Settings whose value must lie in [0, 1], and those that must be >= 0.
_UNIT_INTERVAL = ("exploration_rate", "mood_strength")
_NON_NEGATIVE = ("governor_taper",)


def _check_number(arm: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"arm {arm!r}: override {key!r} must be a number, got {value!r}"
        raise ExperimentDefinitionError(msg)
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        msg = f"arm {arm!r}: override {key!r} must be finite, got {number}"
        raise ExperimentDefinitionError(msg)
    if key in _UNIT_INTERVAL and not 0.0 <= number <= 1.0:
        msg = f"arm {arm!r}: {key} must lie in [0, 1], got {number}"
        raise ExperimentDefinitionError(msg)
    if key in _NON_NEGATIVE and number < 0.0:
        msg = f"arm {arm!r}: {key} must be >= 0, got {number}"
        raise ExperimentDefinitionError(msg)
    return number


def _check_head(arm: str, key: str, head: Any) -> str:
    if not isinstance(head, str) or not _HEAD_RE.match(head):
        msg = (
            f"arm {arm!r}: override {key!r} names no value head ({head!r}); expected "
            f"a snake_case head name"
        )
        raise ExperimentDefinitionError(msg)
    return head


def normalize_overrides(arm: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Validate an arm's overrides and fold ``value_weights.<head>`` keys into ``value_weights``.

    Parameters
    ----------
    arm : str
        Name of the arm (for messages).
    overrides : Mapping[str, Any]
        Raw overrides.

    Returns
    -------
    dict[str, Any]
        Typed overrides keyed by :data:`OVERRIDABLE_SETTINGS` names.

    Raises
    ------
    ExperimentDefinitionError
        On an unknown key, a malformed head name or a value of the wrong type.
    """
    out: dict[str, Any] = {}
    weights: dict[str, float] = {}
    for key, value in overrides.items():
        if key.startswith(VALUE_WEIGHT_PREFIX):
            head = _check_head(arm, key, key[len(VALUE_WEIGHT_PREFIX) :])
            weights[head] = _check_number(arm, key, value)
        elif key == "value_weights":
            if not isinstance(value, Mapping) or not value:
                msg = f"arm {arm!r}: value_weights must be a non-empty mapping head -> weight"
                raise ExperimentDefinitionError(msg)
            for head, w in value.items():
                weights[_check_head(arm, key, head)] = _check_number(arm, f"{key}.{head}", w)
        else:
            out[key] = _check_override(arm, key, value)
    if weights:
        out["value_weights"] = weights
    return out


ExperimentStatus = Literal["draft", "running", "stopped"]


def _check_override(arm: str, key: str, value: Any) -> Any:
    """Validate one override; return the value coerced to the setting's type.

    Parameters
    ----------
    arm : str
        Name of the arm (for the message).
    key : str
        Setting name.
    value : Any
        Overriding value.

    Returns
    -------
    Any
        The value, as ``float`` or ``str``.

    Raises
    ------
    ExperimentDefinitionError
        On an unknown key, a malformed head name or a value of the wrong type.
    """
    if key in OVERRIDABLE_SETTINGS:
        expected = OVERRIDABLE_SETTINGS[key]
    else:
        msg = f"arm {arm!r}: unknown override {key!r}; valid: {_VALID_KEYS_TEXT}"
        raise ExperimentDefinitionError(msg)
    if expected is float:
        return _check_number(arm, key, value)
    if not isinstance(value, str) or not value:
        msg = f"arm {arm!r}: override {key!r} must be a non-empty string, got {value!r}"
        raise ExperimentDefinitionError(msg)
    return value


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
    overrides : dict[str, Any]
        Pipeline settings this arm changes (copied into ``FeedQuery.overrides``); keys among
        :data:`OVERRIDABLE_SETTINGS` (``value_weights.<head>`` keys are folded into
        ``value_weights``). Empty for the control arm.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    weight: float = Field(default=1.0, gt=0.0, allow_inf_nan=False)
    overrides: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _overrides_are_declared(self) -> Arm:
        clean = normalize_overrides(self.name, self.overrides)
        self.overrides.clear()
        self.overrides.update(clean)
        return self


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
