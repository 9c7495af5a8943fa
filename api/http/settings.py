"""API settings (env prefix ``STEERFEED_API_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    """HTTP limits, per-key rate limits, failed-authentication throttling, the per-user cap of
    pending generation jobs and the scheduler switch (docs/security.md has the numbers).

    ``max_body_bytes`` caps every request body, counted as it streams (chunked bodies too).
    ``rate_limit_per_s`` is the sustained requests a second of one key (0 = no limit),
    ``rate_limit_burst`` the bucket size, and ``rate_limit_roles`` overrides the rate per role
    (JSON in the environment, e.g. ``STEERFEED_API_RATE_LIMIT_ROLES='{"service": 5000}'``).
    ``auth_fail_burst`` failed authentications per client address are allowed, then one every
    ``1 / auth_fail_per_s`` seconds (0 = no throttling); ``auth_fail_addresses`` addresses are
    tracked at most. ``generation_max_pending_per_user`` jobs may wait or run per user (0 = no
    cap); one more is answered 429 with ``Retry-After: generation_retry_after_s``.
    """

    model_config = SettingsConfigDict(env_prefix="STEERFEED_API_", extra="forbid")

    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    scheduler: bool = True
    rate_limit_per_s: float = Field(default=50.0, ge=0.0)
    rate_limit_burst: int = Field(default=200, ge=1)
    rate_limit_roles: dict[str, float] = Field(default_factory=lambda: {"service": 2000.0})
    auth_fail_per_s: float = Field(default=0.5, ge=0.0)
    auth_fail_burst: int = Field(default=20, ge=1)
    auth_fail_addresses: int = Field(default=100_000, ge=1)
    generation_max_pending_per_user: int = Field(default=5, ge=0)
    generation_retry_after_s: int = Field(default=30, ge=1)
