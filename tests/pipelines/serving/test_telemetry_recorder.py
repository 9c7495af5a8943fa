"""What the telemetry recorder writes for a finished run, and when it makes no stage spans."""

from __future__ import annotations

import math
import time
from datetime import datetime

import polars as pl
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest

from pipelines.serving.telemetry import Telemetry
from pipelines.serving.telemetry.buffer import MetricsBuffer
from pipelines.serving.telemetry.metrics import render
from ranking.pipeline import FeedQuery, PipelineResult

BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


def test_replayed_observations_expose_as_direct_ones() -> None:
    registry = CollectorRegistry()
    plain = Histogram("plain", "h", ["product"], buckets=BUCKETS, registry=registry)
    logged = Histogram("logged", "h", ["product"], buckets=BUCKETS, registry=registry)
    plain_n = Counter("plain_n", "c", registry=registry)
    logged_n = Counter("logged_n", "c", registry=registry)
    buffer = MetricsBuffer(interval_s=3600.0)  # replayed below, by hand
    seconds = buffer.slot(logged.labels("home").observe)
    count = buffer.slot(logged_n.inc)
    assert buffer.slot(logged.labels("home").observe) == seconds  # registered once
    # On every bound, between bounds, below the first, above the last, zero and negative.
    values = [*BUCKETS, 0.0, -1.0, 0.00007, 0.0003, 0.07, 0.6, 3.0, math.inf]
    for v in values:
        plain.labels("home").observe(v)
        plain_n.inc(3)
        buffer.record([seconds, count], [v, 3])
    assert registry.get_sample_value("logged_count", {"product": "home"}) == 0  # logged only
    buffer.flush()
    text = generate_latest(registry).decode()
    lines = text.splitlines()
    replayed = sorted(line.replace("logged", "plain") for line in lines if "logged" in line)
    assert replayed == sorted(line for line in lines if "plain" in line)
    assert f'logged_count{{product="home"}} {float(len(values))}' in text
    assert f"logged_n_total {3.0 * len(values)}" in text


def test_logged_observations_reach_their_child_without_a_scrape() -> None:
    registry = CollectorRegistry()
    pages = Counter("pages", "c", registry=registry)
    buffer = MetricsBuffer(interval_s=0.01)
    buffer.record([buffer.slot(pages.inc)], [1.0])
    deadline = time.monotonic() + 30  # the flusher thread replays it within its interval
    while registry.get_sample_value("pages_total") != 1.0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert registry.get_sample_value("pages_total") == 1.0


def _result(timings: dict[str, float]) -> PipelineResult:
    query = FeedQuery(user_id=1, limit=5, now=datetime(2026, 1, 5), session_id="s")
    return PipelineResult(
        query,
        pl.DataFrame({"item_id": [1, 2]}),
        removed={3: "safety"},
        source_counts={"trending": 4, "fresh": 0},
        failed_sources=[],
        timings_ms=timings,
        n_candidates=4,
        removed_counts={"safety": 1},
    )


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_finished_run_records_each_component_its_stage_sources_and_removals() -> None:
    product = "recorder_test"
    timings = {
        "qh.user_context": 1.0,
        "qh.governor": 2.0,
        "src.trending": 3.0,
        "sources": 4.0,
        "f.safety": 0.5,
        "s.value": 6.0,
        "select": 7.0,
        "total": 30.0,
    }
    tel = Telemetry(metrics=True)
    for _ in range(2):  # the second run reuses the slots the first resolved
        tel.finished(product, _result(timings))
    render()  # a scrape replays what the page path logged
    stage_sum = "steerfeed_stage_seconds_sum"
    # Components of a stage add up to its time; sources and select are walls of their own.
    assert math.isclose(_value(stage_sum, product=product, stage="query_hydrator"), 2 * 0.003)
    assert math.isclose(_value(stage_sum, product=product, stage="source"), 2 * 0.004)
    assert math.isclose(_value(stage_sum, product=product, stage="selector"), 2 * 0.007)
    assert math.isclose(_value(stage_sum, product=product, stage="filter"), 2 * 0.0005)
    count = "steerfeed_component_seconds_count"
    for key in ("qh.user_context", "qh.governor", "src.trending", "f.safety", "s.value"):
        assert _value(count, product=product, component=key) == 2, key
    for key in ("sources", "select", "total"):  # stage walls and the page: not components
        assert _value(count, product=product, component=key) == 0, key
    assert _value("steerfeed_source_candidates_total", product=product, source="trending") == 8
    assert _value("steerfeed_source_candidates_total", product=product, source="fresh") == 0
    assert _value("steerfeed_filter_removed_total", product=product, filter="safety") == 2


def _stages_under_a_page(sampler: object) -> list[str]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)  # type: ignore[arg-type]
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tel = Telemetry(metrics=False, tracer=provider.get_tracer("test"))
    with tel.page_span("req-1"):
        for stage in ("query_hydrator", "source", "scorer"):
            with tel.stage("home", stage):
                pass
    return [s.name for s in exporter.get_finished_spans()]


def test_an_unsampled_page_makes_no_stage_spans_and_a_sampled_one_makes_each() -> None:
    assert _stages_under_a_page(ALWAYS_OFF) == []
    assert _stages_under_a_page(ALWAYS_ON) == [
        "stage query_hydrator",
        "stage source",
        "stage scorer",
        "feed.page",
    ]


def test_a_stage_outside_a_page_span_follows_the_current_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    tel = Telemetry(metrics=False, tracer=tracer)
    with tel.stage("home", "scorer"):  # no current span: nothing records
        pass
    with tracer.start_as_current_span("caller"), tel.stage("home", "scorer"):
        pass
    assert [s.name for s in exporter.get_finished_spans()] == ["stage scorer", "caller"]
