"""Per-request settings an experiment arm may change: :class:`RequestOverrides`.

``FeedQuery.overrides`` holds one. The components that read a setting fall back to their own
configured value when it is ``None`` (not overridden). An arm's overrides are validated when the
experiment is defined (:class:`pipelines.experiments.definitions.Arm`), so a misspelt key fails
there, with the valid keys listed, and never on a page.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_serializer,
    model_validator,
)

from ranking.learned.heads import HEAD_NAMES

#: The value-model weights an arm may set: one per head, and the lambdarank ranker's.
VALUE_WEIGHT_KEYS: tuple[str, ...] = (*HEAD_NAMES, "ranker")


class RequestOverrides(BaseModel):
    """Pipeline settings overridden for one request (``None``: not overridden).

    Serialised with only the overridden settings (``{"mood_strength": 0.8}``), as experiment
    definitions store and show them.
    """

    # Strict: a number must be a number (``true`` or ``"0.8"`` is an error, not 1.0 or 0.8).
    model_config = ConfigDict(frozen=True, allow_inf_nan=False, strict=True)

    value_weights: dict[str, float] | None = Field(
        default=None,
        description="value-model weight per head (learned scorer); keys among the heads and "
        "'ranker'",
    )
    ranker_model: str | None = Field(
        default=None, min_length=1, description="learned model version to serve (learned scorer)"
    )
    mood_strength: float | None = Field(
        default=None, ge=0.0, le=1.0, description="the mood blend's strength dial (mood scorer)"
    )
    governor_taper: float | None = Field(
        default=None, ge=0.0, description="strength of the governor's taper (taper scorer)"
    )
    satisfaction_weight: float | None = Field(
        default=None, description="weight of the satisfaction head (satisfaction scorer)"
    )
    exploration_rate: float | None = Field(
        default=None, ge=0.0, le=1.0, description="epsilon of the exploring selector"
    )

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(str(k) for k in data if k not in cls.model_fields)
            if unknown:
                msg = f"unknown override {', '.join(map(repr, unknown))}; valid: {valid_text()}"
                raise ValueError(msg)
        return data

    @field_validator("value_weights", mode="before")
    @classmethod
    def _heads(cls, value: Any) -> Any:
        if value is None:
            return value
        if not isinstance(value, dict) or not value:
            msg = "value_weights must be a non-empty mapping head -> weight"
            raise ValueError(msg)
        for head, weight in value.items():
            if head not in VALUE_WEIGHT_KEYS:
                msg = (
                    f"value_weights names no value head ({head!r}); valid: "
                    f"{', '.join(VALUE_WEIGHT_KEYS)}"
                )
                raise ValueError(msg)
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                msg = f"value_weights.{head} must be a number, got {weight!r}"
                raise ValueError(msg)
            if not math.isfinite(weight):
                msg = f"value_weights.{head} must be finite, got {weight}"
                raise ValueError(msg)
        return value

    @model_serializer(mode="wrap")
    def _only_overridden(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}

    def as_dict(self) -> dict[str, Any]:
        """The overridden settings by name (what was set, nothing else)."""
        return {k: v for k in type(self).model_fields if (v := getattr(self, k)) is not None}

    def merged(self, other: RequestOverrides) -> RequestOverrides:
        """These overrides with ``other``'s set values on top."""
        return self.model_copy(update=other.as_dict())


def overridable_settings() -> tuple[str, ...]:
    """The settings an experiment arm may override."""
    return tuple(RequestOverrides.model_fields)


def valid_text() -> str:
    """The valid override keys, for messages (with the flat ``value_weights.<head>`` form)."""
    return ", ".join([*sorted(RequestOverrides.model_fields), "value_weights.<head>"])


NO_OVERRIDES = RequestOverrides()
