"""Telemetry settings (env prefix ``STEERFEED_TELEMETRY_``)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The standard OpenTelemetry variables that name an OTLP endpoint (either turns tracing on).
OTEL_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


class TelemetrySettings(BaseSettings):
    """Metrics, traces and logs.

    ``metrics`` records the Prometheus metrics served at ``/metrics`` (on by default).
    Traces are exported by OTLP over HTTP to ``otlp_endpoint`` (or the standard
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``); with no endpoint
    tracing is off and costs nothing. ``trace_sample_ratio`` of the requests are traced (a
    caller's sampled parent span is followed); the standard ``OTEL_TRACES_SAMPLER`` variables
    override it. ``log_format`` is ``text`` (the default, for a terminal)
    or ``json`` (one JSON object a line, for a log pipeline); either way every line of a request
    or a job carries its request id.
    """

    model_config = SettingsConfigDict(env_prefix="STEERFEED_TELEMETRY_", extra="forbid")

    metrics: bool = True
    otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP traces endpoint, e.g. http://collector:4318/v1/traces"
    )
    service_name: str = Field(default="steerfeed", min_length=1, max_length=100)
    trace_sample_ratio: float = Field(
        # A traced page costs ~0.6 ms of CPU more than an untraced one (ten spans, ~50 us
        # each): at 5%, metrics plus tracing cost ~0.12 ms a page (docs/benchmarks.md).
        default=0.05,
        ge=0.0,
        le=1.0,
        description="share of pages (root spans) traced, parent-based; OTEL_TRACES_SAMPLER wins",
    )
    log_format: Literal["text", "json"] = "text"

    def resolved_otlp_endpoint(self) -> str | None:
        """The endpoint traces go to: the setting, else a standard OTEL variable, else None."""
        if self.otlp_endpoint:
            return self.otlp_endpoint
        for var in OTEL_ENDPOINT_VARS:
            value = os.environ.get(var)
            if value:
                return value
        return None

    @property
    def tracing(self) -> bool:
        """Whether spans are made and exported (an endpoint is configured)."""
        return self.resolved_otlp_endpoint() is not None
