"""What metrics and tracing cost a page: the bench's ``telemetry`` section.

Two measurements on one open engine, in one run, so the machine's load is shared:

- **hook time**: the time spent inside the telemetry hooks of each page (the page span, the
  stage spans, recording the run's metrics and the page's), timed around each hook, as the
  request thread's CPU time (``hook_cpu_*``: the work telemetry adds to the page path, which
  a busy machine's preemption does not inflate) and as wall time (``hook_wall_*``).
- **page latency A/B**: pages served with telemetry off (the reference), with metrics only,
  with metrics and tracing of every page, and with traces sampled at the server's default
  ratio (``TelemetrySettings.trace_sample_ratio``, parent-based trace-id ratio, what the server
  does when an OTLP endpoint is set): each round draws a user and serves
  it one page under each, in a rotating order; the mean of the paired differences has a 95%
  interval (it is small against the page's own variance on a busy machine, which is why the
  hook time is reported too).

Metrics are logged on the page path and replayed into Prometheus in batches by a background
thread (:mod:`~pipelines.serving.telemetry.buffer`): that replay's CPU is not in the hook time,
so it is reported apart, per page that recorded metrics (``metrics_flush_cpu_per_page_ms``).

Tracing uses the SDK's ``BatchSpanProcessor`` with an exporter that encodes every span into the
OTLP protobuf and drops it: the export's CPU is spent in its background thread as in
production, without a collector to send to.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

from pipelines.serving.engine import Engine
from pipelines.serving.page import FeedPage
from pipelines.serving.telemetry import Telemetry
from pipelines.serving.telemetry.buffer import BUFFER
from pipelines.serving.telemetry.settings import TelemetrySettings
from ranking.pipeline import PipelineResult


class EncodeOnlyExporter(SpanExporter):
    """Encodes spans into the OTLP protobuf (what the OTLP exporter sends) and drops them."""

    def __init__(self) -> None:
        self.spans = 0
        self.bytes = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.bytes += len(encode_spans(spans).SerializeToString())
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to close."""


def _now() -> tuple[float, float]:
    """(wall, this thread's CPU) seconds."""
    return time.perf_counter(), time.thread_time()


class _Timed:
    """A context manager that adds the time of its enter and exit to its owner's tallies."""

    def __init__(self, inner: AbstractContextManager[Any], owner: TimedTelemetry) -> None:
        self.inner = inner
        self.owner = owner

    def __enter__(self) -> Any:
        t = _now()
        try:
            return self.inner.__enter__()
        finally:
            self.owner.add(t)

    def __exit__(self, *exc: Any) -> Any:
        t = _now()
        try:
            return self.inner.__exit__(*exc)
        finally:
            self.owner.add(t)


class TimedTelemetry(Telemetry):
    """:class:`Telemetry` that also adds up the wall and CPU time spent in its page-path hooks
    (CPU time of the request thread: what a busy machine's preemption does not inflate)."""

    spent: float = 0.0
    spent_cpu: float = 0.0

    def add(self, since: tuple[float, float]) -> None:
        """Add the time since ``since`` (from :func:`_now`)."""
        wall, cpu = _now()
        self.spent += wall - since[0]
        self.spent_cpu += cpu - since[1]

    def stage(self, pipeline: str, stage: str) -> AbstractContextManager[Any]:
        t = _now()
        cm = super().stage(pipeline, stage)
        self.add(t)
        return _Timed(cm, self)

    def finished(self, pipeline: str, result: PipelineResult) -> None:
        t = _now()
        super().finished(pipeline, result)
        self.add(t)

    def page_span(self, request_id: str) -> Any:
        t = _now()
        cm = super().page_span(request_id)
        self.add(t)
        return _Timed(cm, self)

    def page_served(self, page: FeedPage, seconds: float) -> None:
        t = _now()
        super().page_served(page, seconds)
        self.add(t)


def _mean_ci(a: np.ndarray) -> tuple[float, float]:
    return float(a.mean()), float(1.96 * a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else 0.0


def telemetry_overhead(
    engine: Engine, users: np.ndarray, *, pages: int, rng: np.random.Generator
) -> dict[str, Any]:
    """Serve ``pages`` rounds (one page per configuration each); return hook times and page
    latencies per configuration."""
    exporter = EncodeOnlyExporter()
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    # What the server's default sampler gives once an OTLP endpoint is configured.
    ratio = TelemetrySettings().trace_sample_ratio
    sampled = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)))
    sampled.add_span_processor(BatchSpanProcessor(exporter))
    configs: dict[str, TimedTelemetry] = {
        "off": TimedTelemetry(metrics=False, tracer=None),
        "metrics": TimedTelemetry(metrics=True, tracer=None),
        "metrics_tracing": TimedTelemetry(metrics=True, tracer=provider.get_tracer("bench")),
        "metrics_tracing_sampled": TimedTelemetry(metrics=True, tracer=sampled.get_tracer("bench")),
    }
    saved = engine.telemetry
    lat: dict[str, list[float]] = {k: [] for k in configs}
    hook: dict[str, list[float]] = {k: [] for k in configs}
    hook_cpu: dict[str, list[float]] = {k: [] for k in configs}
    names = list(configs)
    BUFFER.flush()  # what earlier sections logged is not this section's
    flush_cpu = BUFFER.flush_cpu_s
    metric_pages = 0
    try:
        # One user per round, served once under each configuration in a rotating order (the
        # user's first page of a round warms what later ones reuse; rotation spreads that).
        for r in range(pages + 3):
            uid = int(users[rng.integers(0, len(users))])
            for j in range(len(names)):
                name = names[(r + j) % len(names)]
                tel = configs[name]
                engine.telemetry = tel
                before, before_cpu = tel.spent, tel.spent_cpu
                t0 = time.perf_counter()
                engine.feed(uid, limit=20)
                ms = (time.perf_counter() - t0) * 1e3
                metric_pages += int(tel.metrics)
                if r >= 3:  # the first rounds warm the label children and the span pipeline
                    lat[name].append(ms)
                    hook[name].append((tel.spent - before) * 1e3)
                    hook_cpu[name].append((tel.spent_cpu - before_cpu) * 1e3)
    finally:
        engine.telemetry = saved
        provider.shutdown()  # exports what is left
        sampled.shutdown()
        BUFFER.flush()
    out: dict[str, Any] = {
        "pages_per_config": pages,
        "spans_exported": exporter.spans,
        "trace_sample_ratio": ratio,
        # CPU of replaying the logged metrics into Prometheus (background thread), per page.
        "metrics_flush_cpu_per_page_ms": round(
            (BUFFER.flush_cpu_s - flush_cpu) * 1e3 / max(1, metric_pages), 4
        ),
    }
    ref = np.asarray(lat["off"])
    for name in names:
        a = np.asarray(lat[name])
        h = np.asarray(hook[name])
        hc = np.asarray(hook_cpu[name])
        entry: dict[str, Any] = {
            "page_p50_ms": round(float(np.percentile(a, 50)), 3),
            "page_mean_ms": round(float(a.mean()), 3),
            "hook_cpu_mean_ms": round(float(hc.mean()), 4),
            "hook_cpu_p50_ms": round(float(np.percentile(hc, 50)), 4),
            "hook_wall_mean_ms": round(float(h.mean()), 4),
            "hook_wall_p50_ms": round(float(np.percentile(h, 50)), 4),
            "hook_wall_p99_ms": round(float(np.percentile(h, 99)), 4),
        }
        if name != "off":
            diff, half = _mean_ci(a - ref)
            entry["page_mean_minus_off_ms"] = round(diff, 3)
            entry["page_mean_minus_off_ci95_ms"] = round(half, 3)
        out[name] = entry
    if exporter.spans:
        out["otlp_bytes_per_span"] = round(exporter.bytes / exporter.spans, 1)
    return out
