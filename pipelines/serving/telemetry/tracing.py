"""OpenTelemetry tracing: spans exported by OTLP when an endpoint is configured, off otherwise.

:func:`configure_tracing` installs the process's tracer provider once (the app's start-up
calls it); :func:`tracer_for` gives the tracer the engine and the HTTP layer use, or None when
tracing is off (then no span is made at all: nothing is paid on the page path).
"""

from __future__ import annotations

import logging
import os
import threading

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from pipelines.serving.telemetry.settings import TelemetrySettings

logger = logging.getLogger(__name__)

TRACER_NAME = "steerfeed"
_lock = threading.Lock()
_configured: TracerProvider | None = None


def configure_tracing(settings: TelemetrySettings) -> TracerProvider | None:
    """Install a tracer provider exporting to the OTLP endpoint, once per process.

    Returns the provider, or None when no endpoint is configured (tracing off).
    """
    global _configured
    endpoint = settings.resolved_otlp_endpoint()
    if endpoint is None:
        return None
    with _lock:
        if _configured is not None:
            return _configured
        # Loaded only when an endpoint is configured (it brings protobuf and requests along).
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # A span costs ~50 us of CPU on a busy 2-core machine and a page makes nine
        # (docs/benchmarks.md): trace a share of the requests unless the operator chose a
        # sampler with the standard variable.
        sampler = None
        if not os.environ.get("OTEL_TRACES_SAMPLER"):
            sampler = ParentBased(TraceIdRatioBased(settings.trace_sample_ratio))
        provider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name}), sampler=sampler
        )
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        trace.set_tracer_provider(provider)
        _configured = provider
        # The endpoint is configuration, not a secret; its credentials (headers) are not logged.
        logger.info(
            "tracing on: spans exported by OTLP to %s (sampler %s)",
            endpoint,
            provider.sampler.get_description(),
        )
        return provider


def tracer_for(settings: TelemetrySettings) -> trace.Tracer | None:
    """The tracer to use: from the configured provider when tracing is on, else None."""
    if not settings.tracing:
        return None
    configure_tracing(settings)
    return trace.get_tracer(TRACER_NAME)


def shutdown_tracing() -> None:
    """Export what is buffered and stop (the server's shutdown calls it)."""
    with _lock:
        if _configured is not None:
            _configured.force_flush(timeout_millis=5000)
