"""Spans of a page and of a job, caught by the OpenTelemetry SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pipelines.serving.engine import Engine, open_engine
from pipelines.serving.jobs import JobContext, run_job
from pipelines.serving.telemetry import Telemetry, bind_request_id, reset_request_id


@pytest.fixture()
def traced(world_dir: Path) -> Iterator[tuple[Engine, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    engine = open_engine(world_dir)
    engine.telemetry = Telemetry(tracer=provider.get_tracer("test"))
    yield engine, exporter
    engine.close()


def test_a_page_has_one_span_per_stage_under_the_page_span(
    traced: tuple[Engine, InMemorySpanExporter],
) -> None:
    engine, exporter = traced
    uid = max(engine.state.profiles.users)
    token = bind_request_id("req-trace-1")
    try:
        page = engine.feed(uid, limit=5)
    finally:
        reset_request_id(token)
    assert page.request_id == "req-trace-1"
    spans = exporter.get_finished_spans()
    (root,) = [s for s in spans if s.name == "feed.page"]
    assert root.attributes is not None
    assert root.attributes["steerfeed.request_id"] == "req-trace-1"
    assert root.attributes["steerfeed.product"] == page.pipeline
    assert root.attributes["steerfeed.items"] == len(page.items)
    stages = {
        s.name: s
        for s in spans
        if s.parent is not None and s.parent.span_id == root.context.span_id
    }
    declared = {e.stage for e in engine.products[page.pipeline].describe()}
    assert set(stages) == {f"stage {s}" for s in declared}
    for span in stages.values():
        assert span.context.trace_id == root.context.trace_id
        times = (root.start_time, span.start_time, span.end_time, root.end_time)
        assert None not in times
        assert sorted(t or 0 for t in times) == [t or 0 for t in times]


def test_a_failed_page_ends_its_span_with_the_error(
    traced: tuple[Engine, InMemorySpanExporter],
) -> None:
    engine, exporter = traced
    with pytest.raises(Exception, match="unknown user"):
        engine.feed(10**15)
    (root,) = [s for s in exporter.get_finished_spans() if s.name == "feed.page"]
    assert not root.status.is_ok
    assert any(e.name == "exception" for e in root.events)


def test_a_job_run_has_a_span_with_its_run_id(
    traced: tuple[Engine, InMemorySpanExporter],
) -> None:
    engine, exporter = traced
    assert run_job("author_stats", JobContext(engine)).ok
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "job author_stats"]
    assert span.attributes is not None
    assert str(span.attributes["steerfeed.request_id"]).startswith("job-author_stats-")
    assert span.status.is_ok


def test_tracing_is_off_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.serving.telemetry.settings import OTEL_ENDPOINT_VARS, TelemetrySettings
    from pipelines.serving.telemetry.tracing import tracer_for

    for var in OTEL_ENDPOINT_VARS:
        monkeypatch.delenv(var, raising=False)
    assert tracer_for(TelemetrySettings()) is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert TelemetrySettings().tracing
    assert TelemetrySettings(otlp_endpoint="http://c:4318/v1/traces").resolved_otlp_endpoint() == (
        "http://c:4318/v1/traces"
    )
