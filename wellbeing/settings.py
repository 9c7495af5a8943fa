"""Typed settings of the wellbeing package (env prefix ``STEERFEED_WELLBEING_``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TransparencySettings(BaseModel):
    """Schedule and privacy floor of the transparency report."""

    model_config = ConfigDict(extra="forbid")

    period_days: int = Field(default=7, ge=1, le=366)
    min_cohort: int = Field(
        default=20, ge=2, description="fewer people than this in a figure: published suppressed"
    )
    backfill_periods: int = Field(
        default=26,
        ge=1,
        le=520,
        description="how many past periods the first publication covers (a new log)",
    )


class WellbeingSettings(BaseSettings):
    """How the wellbeing components behave when serving.

    Parameters
    ----------
    satisfaction_weight
        Weight of the satisfaction head: the scorer adds ``weight * z(predicted satisfaction)``
        times the spread of the incoming scores. Experiment arms override it per request with
        ``FeedQuery.overrides.satisfaction_weight``; 0 switches the head off.
    long_term_weight
        Weight of the long-term head (the surrogate for the six-month answer), applied like
        ``satisfaction_weight``; 0 switches it off.
    governor_taper
        Strength of the governor's taper (calmer, lower-intensity and connected clips rise as
        the time budget runs out); overridden per request by ``overrides.governor_taper``.
    survey_rate_per_week, survey_min_spacing_hours
        The survey sampling policy's target rate and spacing.
    survey_response_window_hours
        A card not answered or dismissed within this many hours is logged as a non-response.
    default_pages_per_week
        Pages a user with no history is expected to load in a week (sets the per-page rate).
    activity_cache_s
        How long a user's weekly activity (stratum, pages per week) is cached.
    usage_max_age_s
        How often (at most) a replica re-reads a user's governor usage from the store, so
        viewing served by other API replicas counts within this many seconds; 0 re-reads on
        every request (exact, one SQL query per page). After :meth:`warm` the
        ``wellbeing_refresh`` job re-reads every user at once instead.
    transparency
        Schedule and privacy floor of the public transparency report
        (``STEERFEED_WELLBEING_TRANSPARENCY='{"min_cohort": 50}'``).
    warm_on_start
        Load every user's governor usage, overrides, survey history and weekly activity when
        the engine opens (a few bulk scans), so no user's first page queries the store.
    """

    model_config = SettingsConfigDict(env_prefix="STEERFEED_WELLBEING_", extra="forbid")

    satisfaction_weight: float = Field(default=0.5, ge=-10.0, le=10.0)
    long_term_weight: float = Field(default=0.5, ge=-10.0, le=10.0)
    governor_taper: float = Field(default=1.0, ge=0.0, le=10.0)
    survey_rate_per_week: float = Field(default=1.0, gt=0.0, le=20.0)
    survey_min_spacing_hours: float = Field(default=24.0, ge=0.0)
    survey_response_window_hours: float = Field(default=24.0, gt=0.0)
    default_pages_per_week: float = Field(default=30.0, gt=0.0)
    activity_cache_s: float = Field(default=3600.0, ge=0.0)
    usage_max_age_s: float = Field(default=60.0, ge=0.0)
    warm_on_start: bool = True
    transparency: TransparencySettings = Field(default_factory=TransparencySettings)
