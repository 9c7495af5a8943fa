"""The Prometheus metrics steerfeed exports at ``/metrics`` (docs/operations.md explains each).

Metrics recorded as work happens (pages, stages, events, impressions, jobs, surveys, the model
gate, HTTP requests) are ``prometheus_client`` objects in the default registry; with
``PROMETHEUS_MULTIPROC_DIR`` set (several uvicorn workers) they are kept in that folder and
:func:`render` merges every worker's values. Readings of the serving state (the writer's
queue, the model that serves, readiness, the generation queue) are taken when Prometheus
scrapes, by a collector over one engine (:class:`ServingCollector`): in multiprocess mode they
describe the worker that answered the scrape.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pipelines.serving.telemetry.buffer import BUFFER

__all__ = ["CONTENT_TYPE_LATEST", "ServingCollector", "ServingSnapshot", "render"]

# No ``*_created`` series: a timestamp per counter and histogram that no alert or panel reads.
disable_created_metrics()

# Seconds. A page takes ~5-50 ms; a component ~0.05-10 ms.
PAGE_BUCKETS = (0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
JOB_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)

# -- pages and their stages ------------------------------------------------------------------------
PAGES = Counter(
    "steerfeed_pages",
    "Feed pages by product and outcome (ok, empty, stopped by the governor, refused, error)",
    ["product", "status"],
)
PAGE_SECONDS = Histogram(
    "steerfeed_page_seconds",
    "Time to build a feed page in the engine (pipeline and page), by product",
    ["product"],
    buckets=PAGE_BUCKETS,
)
STAGE_SECONDS = Histogram(
    "steerfeed_stage_seconds",
    "Time of each pipeline stage (sources: wall time of the concurrent fetch), by product",
    ["product", "stage"],
    buckets=STAGE_BUCKETS,
)
COMPONENT_SECONDS = Histogram(
    "steerfeed_component_seconds",
    "Time of each pipeline component (its timing key: qh.*, src.*, h.*, f.*, s.*, ph.*, se.*)",
    ["product", "component"],
    buckets=STAGE_BUCKETS,
)
SOURCE_CANDIDATES = Counter(
    "steerfeed_source_candidates",
    "Candidates returned by each candidate source",
    ["product", "source"],
)
FILTER_REMOVED = Counter(
    "steerfeed_filter_removed",
    "Candidates removed by each filter (first filter to remove an item)",
    ["product", "filter"],
)
DEGRADED_SOURCES = Counter(
    "steerfeed_degraded_sources",
    "Pages served without a source at full strength (it failed, timed out or searched a "
    "degraded index)",
    ["product", "source"],
)
GOVERNOR_STOPS = Counter(
    "steerfeed_governor_stops",
    "Stop cards shown instead of clips, by the limit reached",
    ["reason"],
)
SURVEY_CARDS = Counter(
    "steerfeed_survey_cards",
    "Survey cards shown on pages and closed by the user (answered, dismissed)",
    ["outcome"],
)

# -- events and the impression writer --------------------------------------------------------------
EVENTS_INGESTED = Counter(
    "steerfeed_events_ingested",
    "Events received by POST /v1/events and the importers: new ones and repeats of stored ids",
    ["outcome"],
)
IMPRESSIONS_WRITTEN = Counter(
    "steerfeed_impressions_written",
    "Impressions (the engine's own event log) committed by the background writer",
)
IMPRESSION_WRITE_FAILURES = Counter(
    "steerfeed_impression_write_failures",
    "Impression batches the background writer failed to commit (their rows are lost)",
)
IMPRESSION_LAG = Histogram(
    "steerfeed_impression_flush_lag_seconds",
    "How long the oldest impression of a committed batch waited in the writer's queue",
    buckets=LAG_BUCKETS,
)

# -- jobs, the model gate -------------------------------------------------------------------
# The label is job_name: Prometheus keeps ``job`` for the scrape target.
JOB_RUNS = Counter(
    "steerfeed_job_runs", "Job runs by job and outcome (ok, failed)", ["job_name", "outcome"]
)
FOLLOW_LAG = Histogram(
    "steerfeed_follow_lag_seconds",
    "From a row's commit by another worker (or any other writer) to its application in this "
    "worker's serving state, by kind (events: the event log; changes: the change feed)",
    ["kind"],
    buckets=LAG_BUCKETS,
)
FOLLOW_ROWS = Counter(
    "steerfeed_follow_rows_total",
    "Rows of the event log and the change feed this worker applied from other writers",
    ["kind"],
)
FOLLOW_ERRORS = Counter(
    "steerfeed_follow_errors_total", "Follower passes that failed (retried at the next one)"
)
JOB_SECONDS = Histogram("steerfeed_job_seconds", "Job run time", ["job_name"], buckets=JOB_BUCKETS)
JOB_LAST_SUCCESS = Gauge(
    "steerfeed_job_last_success_timestamp_seconds",
    "When each job last succeeded (Unix time)",
    ["job_name"],
    multiprocess_mode="max",
)
MODEL_GATE = Counter(
    "steerfeed_model_gate_verdicts",
    "Promotion gate verdicts on newly trained models (passed, refused)",
    ["verdict"],
)
MODEL_GATE_LAST_PASSED = Gauge(
    "steerfeed_model_gate_last_passed",
    "1 when the last trained model passed the promotion gate, 0 when it was refused",
    multiprocess_mode="mostrecent",
)

# -- HTTP ------------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "steerfeed_http_requests",
    "HTTP requests by method, route template and status code",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "steerfeed_http_request_seconds",
    "HTTP request time by method and route template",
    ["method", "route"],
    buckets=PAGE_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge(
    "steerfeed_http_requests_in_flight",
    "HTTP requests being answered now",
    multiprocess_mode="livesum",
)

# -- API limits ------------------------------------------------------------------------------------
SHARED_LIMIT_FALLBACKS = Counter(
    "steerfeed_shared_limit_fallbacks",
    "Rate-limit and failed-auth checks a worker answered with its own buckets because the "
    "shared buckets (Redis or the store) did not answer",
    ["limit"],
)


@dataclass
class ServingSnapshot:
    """Readings of one engine's serving state, taken when Prometheus scrapes."""

    ready: dict[str, bool]
    degraded: dict[str, bool]
    impression_queue_frames: int
    model_version: str
    model_degraded: bool
    generation_jobs: dict[str, int] = field(default_factory=dict)
    clips: int = 0
    users: int = 0


class ServingCollector(Collector):
    """Gauges read from an engine at scrape time (``snapshot`` is called on every scrape)."""

    def __init__(self, snapshot: Callable[[], ServingSnapshot]) -> None:
        self.snapshot = snapshot

    def describe(self) -> list[GaugeMetricFamily]:
        """Nothing up front: the families are read at scrape time."""
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The serving-state gauges."""
        s = self.snapshot()
        ready = GaugeMetricFamily(
            "steerfeed_ready",
            "1 when the part is ready to serve (store, index, model, concepts)",
            labels=["part"],
        )
        degraded = GaugeMetricFamily(
            "steerfeed_degraded",
            "1 when the part serves degraded (named in /readyz)",
            labels=["part"],
        )
        for part, ok in s.ready.items():
            ready.add_metric([part], 1.0 if ok else 0.0)
        for part, bad in s.degraded.items():
            degraded.add_metric([part], 1.0 if bad else 0.0)
        yield ready
        yield degraded
        yield GaugeMetricFamily(
            "steerfeed_impression_queue_frames",
            "Impression frames waiting in the background writer's queue",
            value=s.impression_queue_frames,
        )
        model = GaugeMetricFamily(
            "steerfeed_model_serving_info",
            "The ranker that serves (version, or hand_weighted) and whether it fell back",
            labels=["version", "degraded"],
        )
        model.add_metric([s.model_version, "true" if s.model_degraded else "false"], 1.0)
        yield model
        jobs = GaugeMetricFamily(
            "steerfeed_generation_jobs",
            "Generation jobs in the queue table by status (queued: the queue depth)",
            labels=["status"],
        )
        for status in sorted({"queued", "running", "done", "failed", *s.generation_jobs}):
            jobs.add_metric([status], float(s.generation_jobs.get(status, 0)))
        yield jobs
        yield GaugeMetricFamily("steerfeed_catalogue_clips", "Clips being served", value=s.clips)
        yield GaugeMetricFamily("steerfeed_users", "Users known to the server", value=s.users)


def multiprocess_dir() -> str | None:
    """The multiprocess folder when several workers share metrics, else None."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def mark_worker_gone() -> None:
    """Replay what the page path logged (:mod:`~pipelines.serving.telemetry.buffer`); in
    multiprocess mode, drop this worker's live gauges (requests in flight) from the merged
    view (its counters stay). Called when the app shuts down."""
    BUFFER.flush()
    if multiprocess_dir():
        multiprocess.mark_process_dead(os.getpid())


def render(serving: Collector | None = None) -> bytes:
    """The text exposition of every metric (all workers' in multiprocess mode) plus the
    serving-state gauges of ``serving``."""
    BUFFER.flush()  # what this process's pages logged and has not replayed yet
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        out = generate_latest(registry)
    else:
        out = generate_latest(REGISTRY)
    if serving is not None:
        own = CollectorRegistry(auto_describe=False)
        own.register(serving)
        out += generate_latest(own)
    return out
