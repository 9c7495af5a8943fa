"""API settings (env prefix ``STEERFEED_API_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    """HTTP limits, per-key rate limits and the scheduler switch.

    ``rate_limit_per_s`` is the sustained requests a second of one key (0 = no limit),
    ``rate_limit_burst`` the bucket size, and ``rate_limit_roles`` overrides the rate per role
    (JSON in the environment, e.g. ``STEERFEED_API_RATE_LIMIT_ROLES='{"service": 5000}'``).
    """

    model_config = SettingsConfigDict(env_prefix="STEERFEED_API_", extra="forbid")

    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    scheduler: bool = True
    rate_limit_per_s: float = Field(default=50.0, ge=0.0)
    rate_limit_burst: int = Field(default=200, ge=1)
    rate_limit_roles: dict[str, float] = Field(default_factory=lambda: {"service": 2000.0})
