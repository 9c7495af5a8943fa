"""The ranking pipeline framework.

A product (home feed, following feed, teen feed) is one declared :class:`RankingPipeline`::

    query hydrators -> candidate sources -> candidate hydrators -> filters -> scorers
      -> selector -> post-selection filters -> post-selection hydrators -> side effects

Candidates are one polars DataFrame keyed by ``item_id``. The runner enforces each stage's
contract: sources return ``item_id`` (Int64) and ``source_score``; hydrators (and
post-selection hydrators) keep the rows and their order; filters split rows into kept and
removed; scorers return one finite score per row; side effects run after the page is built
and never block it (an inline one, a cheap in-memory count, runs before the page is returned).

A component that only some requests need says so itself: ``enabled(query) -> bool``. The runner
skips a disabled component (its timing reads ``skipped``); nothing changes the declared lists.
``run(query, dry_run=True)`` builds the page without its side effects (what "why not" uses).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np
import polars as pl

from ranking.context import RequestContext
from ranking.errors import ContractViolation
from ranking.overrides import RequestOverrides

logger = logging.getLogger(__name__)

CANDIDATE_SCHEMA = {"item_id": pl.Int64, "source_score": pl.Float64}

# Shared pools: sources fan out per request; side effects drain in the background.
_SOURCE_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="source")
_EFFECT_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="side-effect")


@dataclass
class FeedQuery:
    """One feed request and the facts hydrated about it.

    ``exclude_ids`` holds the clips served earlier in this session (from the cursor).
    ``context`` is filled by query hydrators (:class:`~ranking.context.RequestContext`: the
    user's graph and vector, experiment arms, steering, the governor ...).
    ``overrides`` carries experiment-arm settings for this request
    (:class:`~ranking.overrides.RequestOverrides`).
    ``city`` is a city the client passed for this request (normalised and checked by the
    caller); it is used only while the person allows location.
    """

    user_id: int
    limit: int
    now: datetime
    session_id: str
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    page: int = 0
    exclude_ids: frozenset[int] = frozenset()
    context: RequestContext = field(default_factory=RequestContext)
    overrides: RequestOverrides = field(default_factory=RequestOverrides)
    city: str | None = None

    @property
    def now_epoch(self) -> float:
        """``now`` in seconds since the epoch (a naive ``now`` is UTC)."""
        now = self.now
        return (now if now.tzinfo else now.replace(tzinfo=UTC)).timestamp()


@runtime_checkable
class QueryHydrator(Protocol):
    """Adds facts about the request to ``query.context``."""

    name: str

    def hydrate(self, query: FeedQuery) -> None:
        """Mutate ``query.context``."""
        ...


@runtime_checkable
class CandidateSource(Protocol):
    """Returns candidate ids: a frame with ``item_id`` (Int64) and ``source_score`` (Float64).

    ``timeout_s`` bounds how long the runner waits; a source that raises or times out is
    dropped for this request (fail open) and logged.

    A source that only reads memory may set a class attribute ``runs_inline = True``: the
    runner then calls it in the request thread (before starting the others in the pool)
    instead of handing it to a worker thread. Such a source cannot time out (it does no
    I/O), but one that raises is still dropped. On a busy machine each hand-off to a worker
    thread costs a scheduler wake-up, more than these sources' own work (~0.05-0.2 ms).
    """

    name: str
    timeout_s: float

    def fetch(self, query: FeedQuery) -> pl.DataFrame:
        """Return candidates for the query."""
        ...


@runtime_checkable
class CandidateHydrator(Protocol):
    """Adds columns to the candidates; must keep every row in the same order."""

    name: str

    def hydrate(self, query: FeedQuery, candidates: pl.DataFrame) -> pl.DataFrame:
        """Return the candidates with extra columns."""
        ...


@dataclass
class FilterResult:
    """What a filter kept and what it removed (so "why not" can be answered)."""

    kept: pl.DataFrame
    removed: pl.DataFrame


@runtime_checkable
class Filter(Protocol):
    """Splits candidates into kept and removed rows."""

    name: str

    def apply(self, query: FeedQuery, candidates: pl.DataFrame) -> FilterResult:
        """Return kept and removed candidates."""
        ...


@runtime_checkable
class Scorer(Protocol):
    """Returns one finite score per candidate, same length and order.

    The runner stores it as ``score`` (and ``score_<name>``); the next scorer sees it.
    """

    name: str

    def score(self, query: FeedQuery, candidates: pl.DataFrame) -> np.ndarray:
        """Return the scores."""
        ...


@runtime_checkable
class Selector(Protocol):
    """Picks and orders the page from the scored candidates (diversity, caps, cards)."""

    name: str

    def select(self, query: FeedQuery, candidates: pl.DataFrame) -> pl.DataFrame:
        """Return at most ``query.limit`` rows in page order."""
        ...


@runtime_checkable
class PostHydrator(Protocol):
    """Adds columns to the selected page (explanations, labels); must keep every row in order.

    Runs after the post-selection filters, on the ~20 rows of the page, so costly
    annotations (a TreeSHAP pass) are paid for the page only.
    """

    name: str

    def hydrate(self, query: FeedQuery, page: pl.DataFrame) -> pl.DataFrame:
        """Return the page with extra columns."""
        ...


@runtime_checkable
class SideEffect(Protocol):
    """Runs after the page is built (impression logging, caches); never blocks the response.

    A side effect that only updates memory and must be done before the response leaves (the
    governor's page count, read by the next page's cap) sets ``runs_inline = True``: the runner
    then calls it in the request thread. A dry run skips every side effect.
    """

    name: str

    def run(self, query: FeedQuery, page: pl.DataFrame) -> None:
        """Do the work."""
        ...


@dataclass
class PipelineResult:
    """A ranked page and how it was made."""

    query: FeedQuery
    page: pl.DataFrame
    removed: dict[int, str]
    source_counts: dict[str, int]
    failed_sources: list[str]
    timings_ms: dict[str, float]
    n_candidates: int
    effects: list[Future[None]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    # Rows each filter removed on this page (``removed`` keeps only the first filter per item).
    removed_counts: dict[str, int] = field(default_factory=dict)


class PipelineObserver(Protocol):
    """Watches runs of a pipeline (metrics, traces) without any component knowing.

    ``stage`` wraps each stage (``query_hydrator``, ``source``, ``hydrator``, ``filter``,
    ``scorer``, ``selector``, ``post_filter``, ``post_hydrator``, ``side_effect``: the names
    :meth:`RankingPipeline.describe` uses); ``finished`` hears the result of a run that
    completed (a run that raised ends inside a stage's context instead).
    """

    def stage(self, pipeline: str, stage: str) -> AbstractContextManager[Any]:
        """A context entered around one stage."""
        ...

    def finished(self, pipeline: str, result: PipelineResult) -> None:
        """Called once with the finished run."""
        ...


_NO_STAGE: AbstractContextManager[Any] = contextlib.nullcontext()


def _stage(
    observer: PipelineObserver | None, pipeline: str, stage: str
) -> AbstractContextManager[Any]:
    return _NO_STAGE if observer is None else observer.stage(pipeline, stage)


def is_enabled(component: object, query: FeedQuery) -> bool:
    """Whether a component takes part in this request (``enabled(query)``; absent: always)."""
    enabled = getattr(component, "enabled", None)
    return enabled is None or bool(enabled(query))


@dataclass(frozen=True)
class StageEntry:
    """One component of a declared pipeline, as :meth:`RankingPipeline.describe` lists it."""

    stage: str
    name: str
    kind: str
    conditional: bool

    def __str__(self) -> str:
        flag = " (conditional)" if self.conditional else ""
        return f"{self.stage}: {self.name} [{self.kind}]{flag}"


def _entry(stage: str, component: object) -> StageEntry:
    name = str(getattr(component, "name", type(component).__name__))
    inner = getattr(component, "inner", None)
    if stage == "selector" and inner is not None:  # wrapping selectors: list the chain
        name = f"{name} > {_entry(stage, inner).name}"
    return StageEntry(stage, name, type(component).__name__, hasattr(component, "enabled"))


def empty_candidates() -> pl.DataFrame:
    """An empty candidate frame with the source schema."""
    return pl.DataFrame(schema={**CANDIDATE_SCHEMA, "source": pl.String})


def _source_outcome(
    src: CandidateSource,
    fut: Future[pl.DataFrame] | None,
    inline_outcome: pl.DataFrame | BaseException | None,
    deadline: float,
) -> pl.DataFrame | None:
    """A source's frame, or None when it failed or timed out (logged; the page fails open)."""
    if fut is None:
        if isinstance(inline_outcome, BaseException) or inline_outcome is None:
            logger.error("source %s failed; dropped (fail open)", src.name, exc_info=inline_outcome)
            return None
        return inline_outcome
    wait = max(0.0, min(src.timeout_s, deadline - time.perf_counter()))
    try:
        return fut.result(timeout=wait)
    except FutureTimeout:
        logger.warning("source %s timed out after %.0f ms; dropped", src.name, wait * 1e3)
    except Exception:
        logger.exception("source %s failed; dropped (fail open)", src.name)
    return None


@dataclass
class RankingPipeline:
    """A declared product: its components in order. :meth:`run` executes it."""

    name: str
    query_hydrators: Sequence[QueryHydrator]
    sources: Sequence[CandidateSource]
    hydrators: Sequence[CandidateHydrator]
    filters: Sequence[Filter]  # cheapest first
    scorers: Sequence[Scorer]
    selector: Selector
    post_filters: Sequence[Filter] = ()
    post_hydrators: Sequence[PostHydrator] = ()
    side_effects: Sequence[SideEffect] = ()

    def describe(self) -> list[StageEntry]:
        """Every stage and component in run order (name, class, whether it is conditional)."""
        stages: list[tuple[str, Sequence[object]]] = [
            ("query_hydrator", self.query_hydrators),
            ("source", self.sources),
            ("hydrator", self.hydrators),
            ("filter", self.filters),
            ("scorer", self.scorers),
            ("selector", [self.selector]),
            ("post_filter", self.post_filters),
            ("post_hydrator", self.post_hydrators),
            ("side_effect", self.side_effects),
        ]
        return [_entry(stage, c) for stage, comps in stages for c in comps]

    def run(
        self,
        query: FeedQuery,
        *,
        dry_run: bool = False,
        observer: PipelineObserver | None = None,
    ) -> PipelineResult:
        """Run every stage and return the page; side effects are started, not awaited.

        With ``dry_run`` no side effect runs (no impression is logged, no page is counted).
        ``observer`` (metrics, traces) wraps each stage and hears the finished run.
        """
        timings: dict[str, float] = {}
        skipped: list[str] = []  # components whose enabled(query) said no
        t0 = time.perf_counter()
        with _stage(observer, self.name, "query_hydrator"):
            for qh in self.query_hydrators:
                if not is_enabled(qh, query):
                    skipped.append(f"qh.{qh.name}")
                    continue
                t = time.perf_counter()
                qh.hydrate(query)
                timings[f"qh.{qh.name}"] = (time.perf_counter() - t) * 1e3

        with _stage(observer, self.name, "source"):
            t = time.perf_counter()
            cands, counts, failed = self._fetch(query, timings, skipped)
            timings["sources"] = (time.perf_counter() - t) * 1e3
        n_candidates = cands.height

        with _stage(observer, self.name, "hydrator"):
            for h in self.hydrators:
                cands = _hydrate(query, cands, h, "h", timings, skipped)

        removed: dict[int, str] = {}
        removed_counts: dict[str, int] = {}
        with _stage(observer, self.name, "filter"):
            cands = self._filter(
                query, cands, self.filters, removed, timings, skipped, removed_counts
            )

        with _stage(observer, self.name, "scorer"):
            cands = self._score(query, cands, timings, skipped)

        with _stage(observer, self.name, "selector"):
            t = time.perf_counter()
            page = self.selector.select(query, cands.sort("score", descending=True))
            if page.height > query.limit:
                msg = (
                    f"selector {self.selector.name!r} returned {page.height} > limit {query.limit}"
                )
                raise ContractViolation(msg)
            timings["select"] = (time.perf_counter() - t) * 1e3
        if self.post_filters:
            with _stage(observer, self.name, "post_filter"):
                page = self._filter(
                    query, page, self.post_filters, removed, timings, skipped, removed_counts
                )
        if self.post_hydrators:
            with _stage(observer, self.name, "post_hydrator"):
                for ph in self.post_hydrators:
                    page = _hydrate(query, page, ph, "ph", timings, skipped)
        page = page.with_row_index("position").with_columns(pl.col("position").cast(pl.Int32))

        effects: list[Future[None]] = []
        if not dry_run and self.side_effects:
            with _stage(observer, self.name, "side_effect"):
                for e in self.side_effects:
                    if not is_enabled(e, query):
                        skipped.append(f"se.{e.name}")
                        continue
                    if getattr(e, "runs_inline", False):
                        t = time.perf_counter()
                        _run_effect(e, query, page)
                        timings[f"se.{e.name}"] = (time.perf_counter() - t) * 1e3
                    else:
                        # The copied context carries the request id (logs) and the span.
                        ctx = contextvars.copy_context()
                        effects.append(_EFFECT_POOL.submit(ctx.run, _run_effect, e, query, page))
        timings["total"] = (time.perf_counter() - t0) * 1e3
        logger.debug(
            "pipeline=%s request=%s candidates=%d page=%d failed=%s total_ms=%.2f",
            self.name,
            query.request_id,
            n_candidates,
            page.height,
            failed,
            timings["total"],
        )
        result = PipelineResult(
            query,
            page,
            removed,
            counts,
            failed,
            timings,
            n_candidates,
            effects,
            skipped,
            removed_counts,
        )
        if observer is not None:
            observer.finished(self.name, result)
        return result

    def _score(
        self,
        query: FeedQuery,
        cands: pl.DataFrame,
        timings: dict[str, float],
        skipped: list[str],
    ) -> pl.DataFrame:
        if not cands.height:
            return set_columns(cands, {"score": np.zeros(0)})
        for s in self.scorers:
            if not is_enabled(s, query):
                skipped.append(f"s.{s.name}")
                continue
            t = time.perf_counter()
            scores = np.asarray(s.score(query, cands), dtype=np.float64)
            if scores.shape != (cands.height,):
                msg = (
                    f"scorer {s.name!r} returned {scores.shape} scores "
                    f"for {cands.height} candidates"
                )
                raise ContractViolation(msg)
            if not np.all(np.isfinite(scores)):
                msg = f"scorer {s.name!r} returned non-finite scores"
                raise ContractViolation(msg)
            cands = set_columns(cands, {"score": scores, f"score_{s.name}": scores})
            timings[f"s.{s.name}"] = (time.perf_counter() - t) * 1e3
        return cands

    def _fetch(
        self,
        query: FeedQuery,
        timings: dict[str, float] | None = None,
        skipped: list[str] | None = None,
    ) -> tuple[pl.DataFrame, dict[str, int], list[str]]:
        spent: dict[str, float] = {}

        def timed(src: CandidateSource) -> pl.DataFrame:
            t = time.perf_counter()
            try:
                return src.fetch(query)
            finally:
                spent[src.name] = (time.perf_counter() - t) * 1e3

        # Inline sources first, then the pooled ones: started together, the pool threads and
        # this one take the GIL from each other (measured: the inline sources then took ~5 ms
        # instead of ~1 ms and the page was no faster).
        sources = [s for s in self.sources if is_enabled(s, query)]
        if skipped is not None:
            skipped.extend(f"src.{s.name}" for s in self.sources if s not in sources)
        pooled = [s for s in sources if not getattr(s, "runs_inline", False)]
        inline = {s.name for s in sources} - {s.name for s in pooled}
        outcomes: dict[str, pl.DataFrame | BaseException] = {}
        for src in sources:
            if src.name in inline and src.name not in outcomes:
                try:
                    outcomes[src.name] = timed(src)
                except Exception as exc:
                    outcomes[src.name] = exc
        deadline = time.perf_counter() + max((s.timeout_s for s in pooled), default=0.0)
        # Each source runs in a copy of this context: the request id (logs) and the span.
        futures = {
            s.name: _SOURCE_POOL.submit(contextvars.copy_context().run, timed, s) for s in pooled
        }
        ids: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        names: list[str] = []
        counts: dict[str, int] = {}
        failed: list[str] = []
        for src in sources:  # declaration order: the first source of an item wins
            name = src.name
            if name in counts or name in failed:
                continue  # a name declared twice is fetched once
            df = _source_outcome(src, futures.get(name), outcomes.get(name), deadline)
            if df is None:
                failed.append(name)
                continue
            if "item_id" not in df.columns or "source_score" not in df.columns:
                msg = f"source {name!r} must return item_id and source_score, got {df.columns}"
                raise ContractViolation(msg)
            counts[name] = df.height
            if df.height:
                ids.append(df["item_id"].cast(pl.Int64).to_numpy())
                score = df["source_score"].cast(pl.Float64)
                # ``fill_null`` plans a lazy query: only pay for it when there is a null.
                scores.append((score.fill_null(0.0) if score.null_count() else score).to_numpy())
                names.append(name)
        if timings is not None:  # each source's own time (they overlap: "sources" is the wall)
            timings.update({f"src.{k}": v for k, v in spent.items()})
        if not ids:
            return empty_candidates(), counts, failed
        # An item found by several sources keeps the first source in declaration order
        # (numpy, not a polars unique: this runs on every page over ~1,000 rows).
        all_ids = np.concatenate(ids)
        which = np.repeat(np.arange(len(ids)), [len(a) for a in ids])
        _, first = np.unique(all_ids, return_index=True)
        first.sort()
        merged = pl.DataFrame(
            {
                "item_id": all_ids[first],
                "source_score": np.concatenate(scores)[first],
                "source": np.asarray(names, dtype=object)[which[first]],
            },
            schema={**CANDIDATE_SCHEMA, "source": pl.String},
        )
        return merged, counts, failed

    @staticmethod
    def _filter(
        query: FeedQuery,
        cands: pl.DataFrame,
        filters: Sequence[Filter],
        removed: dict[int, str],
        timings: dict[str, float],
        skipped: list[str],
        removed_counts: dict[str, int] | None = None,
    ) -> pl.DataFrame:
        for f in filters:
            if cands.height == 0:
                break
            if not is_enabled(f, query):
                skipped.append(f"f.{f.name}")
                continue
            t = time.perf_counter()
            n = cands.height
            res = f.apply(query, cands)
            if res.kept.height + res.removed.height != n:
                msg = (
                    f"filter {f.name!r} kept {res.kept.height} and removed {res.removed.height} "
                    f"of {n} candidates"
                )
                raise ContractViolation(msg)
            for item_id in res.removed["item_id"].to_list():
                removed.setdefault(int(item_id), f.name)
            if res.removed.height and removed_counts is not None:
                removed_counts[f.name] = removed_counts.get(f.name, 0) + res.removed.height
            cands = res.kept
            timings[f"f.{f.name}"] = (time.perf_counter() - t) * 1e3
        return cands


def _hydrate(
    query: FeedQuery,
    frame: pl.DataFrame,
    h: CandidateHydrator | PostHydrator,
    prefix: str,
    timings: dict[str, float],
    skipped: list[str],
) -> pl.DataFrame:
    """Run one (post-selection) hydrator and check that it kept the rows and their order."""
    if not is_enabled(h, query):
        skipped.append(f"{prefix}.{h.name}")
        return frame
    t = time.perf_counter()
    n = frame.height
    ids = frame["item_id"]
    out = h.hydrate(query, frame)
    if out.height != n or not out["item_id"].equals(ids):
        msg = f"hydrator {h.name!r} changed the candidate rows ({n} -> {out.height})"
        raise ContractViolation(msg)
    timings[f"{prefix}.{h.name}"] = (time.perf_counter() - t) * 1e3
    return out


def _run_effect(effect: SideEffect, query: FeedQuery, page: pl.DataFrame) -> None:
    try:
        effect.run(query, page)
    except Exception:
        logger.exception("side effect %s failed", effect.name)


def set_columns(frame: pl.DataFrame, columns: Mapping[str, np.ndarray | pl.Series]) -> pl.DataFrame:
    """``frame`` with columns set from arrays (replaced where the name exists, else appended).

    Same result as ``frame.with_columns(pl.Series(k, v) ...)`` for arrays of the frame's
    height (a zero-length array on an empty frame), without polars' lazy engine: that
    plans a query and hands the work to its thread pool, which costs more than the copy on
    a page of ~1,000 rows and stalls when the machine's cores are busy.
    """
    out = frame.clone()  # shallow: the columns are shared, not copied
    new: list[pl.Series] = []
    names = set(out.columns)
    for name, values in columns.items():
        series = values.alias(name) if isinstance(values, pl.Series) else pl.Series(name, values)
        if name in names:
            out.replace_column(out.get_column_index(name), series)
        else:
            new.append(series)
            names.add(name)
    return out.hstack(new) if new else out


def incoming_scores(candidates: pl.DataFrame) -> np.ndarray:
    """The score the earlier scorers gave each candidate (``score``) as float64, zeros when
    no scorer has run yet: what a blending scorer (mood, feedback, boosts) starts from."""
    if "score" not in candidates.columns:
        return np.zeros(candidates.height)
    return candidates["score"].cast(pl.Float64).to_numpy()


def split_by_mask(candidates: pl.DataFrame, remove: np.ndarray | pl.Series) -> FilterResult:
    """Build a :class:`FilterResult` from a boolean mask of rows to remove."""
    mask = remove.to_numpy() if isinstance(remove, pl.Series) else np.asarray(remove, dtype=bool)
    mask = mask.astype(bool, copy=False)
    # Most filters remove nothing on most pages: skip the two copies then.
    if not mask.any():
        return FilterResult(kept=candidates, removed=candidates.clear())
    if mask.all():
        return FilterResult(kept=candidates.clear(), removed=candidates)
    return FilterResult(
        kept=candidates[np.flatnonzero(~mask)], removed=candidates[np.flatnonzero(mask)]
    )
