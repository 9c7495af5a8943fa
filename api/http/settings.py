"""API settings (env prefix ``STEERFEED_API_``)."""

from __future__ import annotations

from pydantic import Field, field_validator
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

    ``limits_url`` says where the rate-limit and failed-authentication buckets live
    (``STEERFEED_API_LIMITS_URL``): ``auto`` (the default) in the store's database when it is
    PostgreSQL (shared by every worker and server of the deployment), else in this process's
    memory; ``memory``; ``store`` (the PostgreSQL store, an error on DuckDB); or a
    ``redis://host:6379/0``, ``rediss://...`` or ``postgresql://...`` URL
    (api/http/ratelimit.py, docs/security.md#throttles).
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
    limits_url: str = Field(default="auto", max_length=2048)

    @field_validator("limits_url")
    @classmethod
    def _known_limits_url(cls, value: str) -> str:
        if value in LIMITS_KEYWORDS or value.startswith(LIMITS_SCHEMES):
            return value
        msg = (
            f"unknown limits_url {value.split('://')[0] + ('://...' if '://' in value else '')!r};"
            " valid: "
            f"{', '.join(LIMITS_KEYWORDS)} or a URL starting {', '.join(LIMITS_SCHEMES)}"
        )
        raise ValueError(msg)


#: ``limits_url`` values that are not URLs.
LIMITS_KEYWORDS = ("auto", "memory", "store")
#: ``limits_url`` URL schemes (storage/buckets.py opens them).
LIMITS_SCHEMES = ("redis://", "rediss://", "postgresql://", "postgres://")
