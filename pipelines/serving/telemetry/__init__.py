"""Telemetry: Prometheus metrics, OpenTelemetry spans, structured logs and the request id.

``metrics`` defines what ``/metrics`` exports; :class:`Telemetry` records pages, stages and
jobs (the ranking pipeline's observer); ``tracing`` installs the OTLP exporter when an endpoint
is configured; ``logs`` formats log lines (text or JSON) with the request id; ``context`` holds
the request id of the work in progress. docs/operations.md explains each metric.
"""

from __future__ import annotations

from pipelines.serving.telemetry.context import (
    bind_request_id,
    current_request_id,
    new_request_id,
    reset_request_id,
)
from pipelines.serving.telemetry.recorder import Telemetry
from pipelines.serving.telemetry.settings import TelemetrySettings

__all__ = [
    "Telemetry",
    "TelemetrySettings",
    "bind_request_id",
    "current_request_id",
    "new_request_id",
    "reset_request_id",
]
