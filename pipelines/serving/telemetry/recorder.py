""":class:`Telemetry`: what the engine records about each page (metrics and spans).

It is the ranking pipeline's observer (:class:`ranking.pipeline.PipelineObserver`): the runner
wraps each stage in :meth:`Telemetry.stage` (a span, when tracing is on) and hands the finished
run to :meth:`Telemetry.finished`, which turns its timings, source counts and removals into
metrics in one pass. No component records anything itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from pipelines.serving.telemetry import metrics as m

if TYPE_CHECKING:
    from pipelines.serving.page import FeedPage
    from ranking.pipeline import PipelineResult

_NULL: AbstractContextManager[Any] = contextlib.nullcontext()

#: Timing keys of the runner that are stage walls, not components.
_STAGE_KEYS = {"sources": "source", "select": "selector"}
#: Component timing prefixes and the stage they belong to.
_PREFIX_STAGE = {
    "qh": "query_hydrator",
    "h": "hydrator",
    "f": "filter",
    "s": "scorer",
    "ph": "post_hydrator",
    "se": "side_effect",
}


_STAGE_SPAN_NAMES = {
    s: f"stage {s}"
    for s in (
        "query_hydrator",
        "source",
        "hydrator",
        "filter",
        "scorer",
        "selector",
        "post_filter",
        "post_hydrator",
        "side_effect",
    )
}


class Telemetry:
    """Metrics and spans for pages, stages and jobs.

    Parameters
    ----------
    metrics
        Record Prometheus metrics (``STEERFEED_TELEMETRY_METRICS``).
    tracer
        Make spans with this tracer; None: tracing is off and no span is made.
    """

    def __init__(self, *, metrics: bool = True, tracer: trace.Tracer | None = None) -> None:
        self.metrics = metrics
        self.tracer = tracer
        # Label children looked up once (a labels() call takes a lock and builds a tuple).
        self._children: dict[tuple[Any, ...], Any] = {}

    @classmethod
    def off(cls) -> Telemetry:
        """Records nothing (the bench's reference)."""
        return cls(metrics=False, tracer=None)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = metric.labels(*labels)
            self._children[key] = child
        return child

    # -- the pipeline observer ---------------------------------------------------------------
    def stage(self, pipeline: str, stage: str) -> AbstractContextManager[Any]:
        """A span around one stage of a page (nothing when tracing is off)."""
        if self.tracer is None or not trace.get_current_span().is_recording():
            return _NULL  # tracing off, or this page was not sampled: no stage spans either
        # No attributes: the name says the stage and the page span the product (each
        # attribute costs a locked insert on a path that runs nine times a page).
        return self.tracer.start_as_current_span(_STAGE_SPAN_NAMES.get(stage) or f"stage {stage}")

    def finished(self, pipeline: str, result: PipelineResult) -> None:
        """Record a finished run: stage and component times, candidates per source, removals."""
        if not self.metrics:
            return
        walls: dict[str, float] = {}
        for key, ms in result.timings_ms.items():
            if key == "total":
                continue
            stage = _STAGE_KEYS.get(key)
            if stage is not None:
                walls[stage] = ms
                continue
            prefix = key.split(".", 1)[0]
            self._child(m.COMPONENT_SECONDS, pipeline, key).observe(ms / 1e3)
            stage = _PREFIX_STAGE.get(prefix)
            if stage is not None:
                walls[stage] = walls.get(stage, 0.0) + ms
        for stage, ms in walls.items():
            self._child(m.STAGE_SECONDS, pipeline, stage).observe(ms / 1e3)
        for source, n in result.source_counts.items():
            if n:
                self._child(m.SOURCE_CANDIDATES, pipeline, source).inc(n)
        for name, n in result.removed_counts.items():
            self._child(m.FILTER_REMOVED, pipeline, name).inc(n)

    # -- pages ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def page_span(self, request_id: str) -> Iterator[trace.Span | None]:
        """A span around one page; yields it (None when tracing is off) to add attributes."""
        if self.tracer is None:
            yield None
            return
        with self.tracer.start_as_current_span(
            "feed.page", attributes={"steerfeed.request_id": request_id}
        ) as span:
            yield span

    def page_served(self, page: FeedPage, seconds: float) -> None:
        """Count a served page: outcome, time, degraded sources, stop and survey cards."""
        if not self.metrics:
            return
        product = page.pipeline
        if page.stop_card is not None:
            status = "stopped"
            self._child(m.GOVERNOR_STOPS, str(page.stop_card.reason)).inc()
        else:
            status = "ok" if page.items else "empty"
        self._child(m.PAGES, product, status).inc()
        self._child(m.PAGE_SECONDS, product).observe(seconds)
        for source in page.degraded_sources:
            self._child(m.DEGRADED_SOURCES, product, source).inc()
        if page.survey is not None:
            self._child(m.SURVEY_CARDS, "shown").inc()

    def page_failed(self, product: str, *, refused: bool) -> None:
        """Count a page that was refused (a client error: unknown user, bad cursor) or failed."""
        if self.metrics:
            self._child(m.PAGES, product, "refused" if refused else "error").inc()

    # -- writes ---------------------------------------------------------------------------------
    def events_ingested(self, new: int, duplicates: int) -> None:
        """Count an ingested batch."""
        if not self.metrics:
            return
        if new:
            self._child(m.EVENTS_INGESTED, "new").inc(new)
        if duplicates:
            self._child(m.EVENTS_INGESTED, "duplicate").inc(duplicates)

    def impressions_batch(self, rows: int, lag_s: float, ok: bool) -> None:
        """Record one batch of the impression writer (``lag_s``: its oldest row's wait)."""
        if not self.metrics:
            return
        if ok:
            m.IMPRESSIONS_WRITTEN.inc(rows)
            m.IMPRESSION_LAG.observe(lag_s)
        else:
            m.IMPRESSION_WRITE_FAILURES.inc()

    def survey_closed(self, answered: bool) -> None:
        """Count a survey card the user answered or dismissed."""
        if self.metrics:
            self._child(m.SURVEY_CARDS, "answered" if answered else "dismissed").inc()

    # -- jobs -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def job_span(self, job: str, run_id: str) -> Iterator[trace.Span | None]:
        """A span around one job run (None when tracing is off)."""
        if self.tracer is None:
            yield None
            return
        with self.tracer.start_as_current_span(
            f"job {job}", attributes={"steerfeed.job": job, "steerfeed.request_id": run_id}
        ) as span:
            yield span

    def job_finished(self, job: str, *, ok: bool, seconds: float, finished_at: float) -> None:
        """Count a job run, its time and (when it succeeded) when."""
        if not self.metrics:
            return
        self._child(m.JOB_RUNS, job, "ok" if ok else "failed").inc()
        self._child(m.JOB_SECONDS, job).observe(seconds)
        if ok:
            self._child(m.JOB_LAST_SUCCESS, job).set(finished_at)

    def gate_verdict(self, passed: bool) -> None:
        """Record the promotion gate's verdict on a newly trained model."""
        if not self.metrics:
            return
        self._child(m.MODEL_GATE, "passed" if passed else "refused").inc()
        m.MODEL_GATE_LAST_PASSED.set(1.0 if passed else 0.0)
