""":class:`Telemetry`: what the engine records about each page (metrics and spans).

It is the ranking pipeline's observer (:class:`ranking.pipeline.PipelineObserver`): the runner
wraps each stage in :meth:`Telemetry.stage` (a span, when the page is traced) and hands the
finished run to :meth:`Telemetry.finished`, which turns its timings, source counts and removals
into metric observations in one pass, logged to the metrics buffer
(:mod:`~pipelines.serving.telemetry.buffer`) and replayed into Prometheus in batches. No
component records anything itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from prometheus_client import Histogram

from pipelines.serving.telemetry import metrics as m
from pipelines.serving.telemetry.buffer import BUFFER

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


#: Whether the page being built is traced (None outside a page span). Set once by the page
#: span, so each stage asks a context variable instead of the OpenTelemetry context.
_PAGE_TRACED: ContextVar[bool | None] = ContextVar("steerfeed_page_traced", default=None)


class _PipelineChildren:
    """One pipeline's metric slots in the buffer, resolved once: what each timing key records,
    and the slots of its stages, sources and filters (a lookup per item, no labels())."""

    __slots__ = ("filters", "sources", "stages", "timings")

    def __init__(self) -> None:
        # timing key -> (component histogram slot or -1, stage or None, is a stage wall)
        self.timings: dict[str, tuple[int, str | None, bool]] = {}
        self.stages: dict[str, int] = {}
        self.sources: dict[str, int] = {}
        self.filters: dict[str, int] = {}


class _PageSpan:
    """The page's span, made current; notes in :data:`_PAGE_TRACED` whether it records, and
    sets the request id only then (an unsampled page's span keeps no attribute)."""

    __slots__ = ("_inner", "_request_id", "_token")

    def __init__(self, tracer: trace.Tracer, request_id: str) -> None:
        self._inner: AbstractContextManager[trace.Span] = tracer.start_as_current_span("feed.page")
        self._request_id = request_id
        self._token: Token[bool | None] | None = None

    def __enter__(self) -> trace.Span:
        span = self._inner.__enter__()
        recording = span.is_recording()
        if recording:
            span.set_attribute("steerfeed.request_id", self._request_id)
        self._token = _PAGE_TRACED.set(recording)
        return span

    def __exit__(self, *exc: Any) -> bool | None:
        if self._token is not None:
            _PAGE_TRACED.reset(self._token)
        return self._inner.__exit__(*exc)


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
        self._slots: dict[tuple[Any, ...], int] = {}
        self._pipelines: dict[str, _PipelineChildren] = {}

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

    def _slot(self, metric: Any, *labels: str) -> int:
        """The buffer slot of a labelled child: its ``observe`` (histogram) or ``inc``."""
        key = (id(metric), *labels)
        slot = self._slots.get(key)
        if slot is None:
            child = self._child(metric, *labels)
            record = child.observe if isinstance(metric, Histogram) else child.inc
            slot = self._slots[key] = BUFFER.slot(record)
        return slot

    # -- the pipeline observer ---------------------------------------------------------------
    def stage(self, pipeline: str, stage: str) -> AbstractContextManager[Any]:
        """A span around one stage of a page (nothing when tracing is off)."""
        if self.tracer is None:
            return _NULL
        traced = _PAGE_TRACED.get()
        if traced is None:  # a run outside a page span: ask the current span
            traced = trace.get_current_span().is_recording()
        if not traced:
            return _NULL  # this page was not sampled: no stage spans either
        # No attributes: the name says the stage and the page span the product (each
        # attribute costs a locked insert on a path that runs nine times a page).
        return self.tracer.start_as_current_span(_STAGE_SPAN_NAMES.get(stage) or f"stage {stage}")

    def finished(self, pipeline: str, result: PipelineResult) -> None:
        """Record a finished run: stage and component times, candidates per source, removals.

        One pass over the timings the runner collected, logged to the metrics buffer under
        one lock (:mod:`~pipelines.serving.telemetry.buffer`); every slot is resolved the
        first time a pipeline reports it and reused after (see :class:`_PipelineChildren`).
        """
        if not self.metrics:
            return
        children = self._pipelines.get(pipeline)
        if children is None:
            children = self._pipelines[pipeline] = _PipelineChildren()
        plan = children.timings
        slots: list[int] = []
        values: list[float] = []
        walls: dict[str, float] = {}
        for key, ms in result.timings_ms.items():
            step = plan.get(key)
            if step is None:
                step = plan[key] = self._timing_step(pipeline, key)
            slot, stage, is_wall = step
            if slot >= 0:
                slots.append(slot)
                values.append(ms / 1e3)
            if stage is not None:
                walls[stage] = ms if is_wall else walls.get(stage, 0.0) + ms
        stages = children.stages
        for stage, ms in walls.items():
            found = stages.get(stage)
            if found is None:
                found = stages[stage] = self._slot(m.STAGE_SECONDS, pipeline, stage)
            slots.append(found)
            values.append(ms / 1e3)
        sources = children.sources
        for source, n in result.source_counts.items():
            if n:
                found = sources.get(source)
                if found is None:
                    found = sources[source] = self._slot(m.SOURCE_CANDIDATES, pipeline, source)
                slots.append(found)
                values.append(n)
        filters = children.filters
        for name, n in result.removed_counts.items():
            found = filters.get(name)
            if found is None:
                found = filters[name] = self._slot(m.FILTER_REMOVED, pipeline, name)
            slots.append(found)
            values.append(n)
        BUFFER.record(slots, values)

    def _timing_step(self, pipeline: str, key: str) -> tuple[int, str | None, bool]:
        """What one timing key of the runner records: a component time (``qh.*``, ``src.*``,
        ``h.*``, ``f.*``, ``s.*``, ``ph.*``, ``se.*``) added to its stage's time, or a stage's
        wall time (``sources``, ``select``), or nothing (``total``: the page has its own)."""
        if key == "total":
            return -1, None, False
        wall = _STAGE_KEYS.get(key)
        if wall is not None:
            return -1, wall, True
        slot = self._slot(m.COMPONENT_SECONDS, pipeline, key)
        return slot, _PREFIX_STAGE.get(key.split(".", 1)[0]), False

    # -- pages ------------------------------------------------------------------------------------
    def page_span(self, request_id: str) -> AbstractContextManager[trace.Span | None]:
        """A span around one page; enters as it (None when tracing is off) to add attributes."""
        if self.tracer is None:
            return _NULL
        return _PageSpan(self.tracer, request_id)

    def page_served(self, page: FeedPage, seconds: float) -> None:
        """Count a served page: outcome, time, degraded sources, stop and survey cards."""
        if not self.metrics:
            return
        product = page.pipeline
        if page.stop_card is not None:
            status = "stopped"
            slots = [self._slot(m.GOVERNOR_STOPS, str(page.stop_card.reason))]
            values = [1.0]
        else:
            status = "ok" if page.items else "empty"
            slots, values = [], []
        slots += (self._slot(m.PAGES, product, status), self._slot(m.PAGE_SECONDS, product))
        values += (1.0, seconds)
        for source in page.degraded_sources:
            slots.append(self._slot(m.DEGRADED_SOURCES, product, source))
            values.append(1.0)
        if page.survey is not None:
            slots.append(self._slot(m.SURVEY_CARDS, "shown"))
            values.append(1.0)
        BUFFER.record(slots, values)

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

    def followed(self, kind: str, lags_s: list[float]) -> None:
        """Record rows another writer committed that this worker applied (``lags_s``: each
        row's time from commit to application)."""
        if not self.metrics or not lags_s:
            return
        child = self._child(m.FOLLOW_LAG, kind)
        for lag in lags_s:
            child.observe(lag)
        self._child(m.FOLLOW_ROWS, kind).inc(len(lags_s))

    def follow_failed(self) -> None:
        """Count a follower pass that failed."""
        if self.metrics:
            m.FOLLOW_ERRORS.inc()

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
