"""API settings (env prefix ``STEERFEED_API_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    """HTTP limits and the scheduler switch."""

    model_config = SettingsConfigDict(env_prefix="STEERFEED_API_", extra="forbid")

    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    scheduler: bool = True
