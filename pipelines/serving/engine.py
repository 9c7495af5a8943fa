"""The engine: opens the stores, holds the serving state and runs the feed products.

The API, the CLI, jobs and evaluations all go through one :class:`Engine`, so a page served in
a benchmark is made exactly as a page served over HTTP.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from features.embedding import DEFAULT_MODEL, TextEmbedder, shared_embedder
from pipelines.experiments.repository import ExperimentRepository
from pipelines.generation.media_access import MediaAccess
from pipelines.generation.service import GenerationService
from pipelines.serving.index_reconciler import IndexReconciler
from pipelines.serving.jobs.train import refresh_author_stats
from pipelines.serving.page import (
    Explanation,
    FeatureContribution,
    FeedItem,
    FeedPage,
    PageDiagnostics,
)
from pipelines.serving.products.choice import choose_product
from pipelines.serving.products.deps import ProductDeps
from pipelines.serving.products.following_only import FOLLOWING_ONLY, build_following_only_feed
from pipelines.serving.products.home import HOME, build_home_feed
from pipelines.serving.settings import SteerfeedSettings
from pipelines.serving.telemetry import Telemetry, current_request_id, new_request_id
from pipelines.serving.telemetry.metrics import ServingCollector, ServingSnapshot
from pipelines.serving.telemetry.tracing import tracer_for
from ranking.cursor import Cursor, CursorCodec
from ranking.data_controls import DataControlsService
from ranking.errors import BadCursorError
from ranking.explain import reason_text, top_contributions
from ranking.learned.services import build_learned
from ranking.learned.serving import LearnedModels
from ranking.locality import ClipCities
from ranking.overrides import NO_OVERRIDES, RequestOverrides
from ranking.pipeline import FeedQuery, PipelineResult, RankingPipeline
from ranking.retrieval.services import CollabServices, build_collab
from ranking.retrieval.settings import COLLAB_SPACE
from ranking.state import FeedState
from steering.services import SteeringServices, build_steering
from storage.erasure import pseudonym
from storage.errors import IndexUnavailableError, UnknownEntityError
from storage.event_writer import BackgroundEventWriter
from storage.factory import open_store
from storage.fence import UserErasedError, UserFence
from storage.index.base import VectorIndex, VectorSpec
from storage.index.edge import EdgeVectorIndex
from storage.index.factory import open_index
from storage.keys import derive
from storage.log_follow import changes_high_water, events_high_water
from storage.store import Store
from wellbeing.cards import GovernorCard, StopCard, SurveyCard
from wellbeing.service import WellbeingServices, build_services

logger = logging.getLogger(__name__)

CAPTION_SPACE = "caption"


class Engine:
    """Stores, serving state, services and products for one data directory.

    Every service is built here, from explicit settings, and held as a typed attribute
    (``engine.steering``, ``engine.wellbeing``, ``engine.learned``, ``engine.collab``,
    ``engine.generation``, ``engine.experiments``); the products are declared once from them.

    Parameters
    ----------
    settings
        The root settings (built once by the CLI or the app factory).
    telemetry
        What records metrics and spans (default: from ``settings.telemetry``).
    """

    def __init__(self, settings: SteerfeedSettings, *, telemetry: Telemetry | None = None) -> None:
        self.settings = settings
        self.telemetry = telemetry or Telemetry(
            metrics=settings.telemetry.metrics, tracer=tracer_for(settings.telemetry)
        )
        # Side effects of served pages still running (impression logging): close() waits for
        # them before the writer's last flush, so a drained server loses no impression.
        self._effects: set[Future[None]] = set()
        self._effects_lock = threading.Lock()
        self.storage = settings.storage
        self.embedding_settings = settings.embedding
        self.feed_settings = settings.feed
        self.hand_weights = settings.hand_weights
        self.data_dir = self.storage.data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.feed_settings.blas_threads is not None:
            threadpool_limits(limits=self.feed_settings.blas_threads, user_api="blas")
        # This process's number in the shared store's event log and change feed: its
        # follower skips the rows it wrote (pipelines/serving/follower.py).
        self.origin = secrets.randbits(62)
        # STEERFEED_DB_URL: the DuckDB file under data_dir by default, or a PostgreSQL server.
        self.store: Store = open_store(
            self.storage.resolved_db_url(),
            memory_limit=self.storage.duckdb_memory_limit,
            origin=self.origin,
        )
        # On PostgreSQL other workers, jobs and the CLI write to the store too: the state is
        # loaded up to the log's numbers read now, and a follower applies what comes after.
        follow = settings.follow.enabled
        self.follow_from: tuple[int, int] | None = (
            (events_high_water(self.store), changes_high_water(self.store))
            if self.store.dialect == "postgres" and follow is not False
            else None
        )
        # Called first by close(): what was started on this engine from outside (a follower).
        self.on_close: list[Callable[[], None]] = []
        # Handlers of change-feed rows for tables the engine does not keep itself (the API's
        # key cache: "api_keys"), called by the follower with that table's rows.
        self.change_listeners: dict[str, list[Callable[[pl.DataFrame], None]]] = {}
        # In-flight work per user; an erasure closes it first (storage/fence.py). Events of a
        # user being erased are dropped at the store, whatever queue they wait in.
        self.fence = UserFence()
        self.store.event_filter = self._without_erased
        self.pseudonym_key = self.storage.resolved_pseudonym_key()
        self.index: VectorIndex | None = None
        self.index_error: str | None = None
        # Seconds between syncs of this process's own index with the store (None: no sync).
        self.index_sync_s: float | None = None
        # The spaces the index holds: what a lost index is rebuilt with.
        self.index_spaces: dict[str, VectorSpec] = {
            CAPTION_SPACE: VectorSpec(self.embedding_dim(), "cosine"),
            # The collab job fills this space; a lost index is rebuilt with it from the store.
            COLLAB_SPACE: VectorSpec(settings.collab.dim, "dot"),
        }
        self._open_index()
        self.index_reconciler = IndexReconciler(
            self.store,
            self.index,
            self.index_spaces,
            payloads=clip_payloads,
            ensure=self._ensure_index,
            sync_every_s=self.index_sync_s,
        )
        cached = self.store.get_vectors(CAPTION_SPACE)
        self.store.release_memory()  # the matrix is in hand; its blocks need not stay cached
        self.state = FeedState.load(
            self.store,
            vectors=cached,
            up_to_seq=self.follow_from[0] if self.follow_from is not None else None,
        )
        # Clips' cities and people's data controls (read once; written through).
        self.clip_cities = ClipCities.load(self.store)
        self.data_controls = DataControlsService(self.store, self.state, self.clip_cities)
        self.writer = BackgroundEventWriter(
            self.store,
            on_commit=self._events_committed,
            max_wait_s=self.storage.event_writer_max_wait_s,
            max_batch_rows=self.storage.event_writer_max_batch_rows,
            on_batch=lambda rows, lag, ok: self.telemetry.impressions_batch(rows, lag, ok),
        )
        self.cursors = CursorCodec(self._secret())
        # Signs media links to clips showing people whose consent limits who may see them.
        self.media_key = self.secret_for("media")
        self._embedder: TextEmbedder | None = None
        self._embedder_lock = threading.Lock()

        # Services: cheap to build (nothing is loaded or embedded until first use), except the
        # wellbeing warm-up, which reads every user's usage in a few bulk scans so that no
        # user's first page queries the store.
        self.collab: CollabServices = build_collab(self.store, settings.collab)
        self.learned: LearnedModels = build_learned(
            self.data_dir, settings.learned, on_first_load=self._warm_author_stats
        )
        self.steering: SteeringServices = build_steering(
            self.store, self.state, lambda: self.embedder
        )
        self.wellbeing: WellbeingServices = build_services(
            self.store, self.state, settings.wellbeing
        )
        if settings.wellbeing.warm_on_start:
            self.wellbeing.warm()
        self.generation = GenerationService(self, settings.generation)
        self.media_access = MediaAccess(
            self.media_key, self.state, self.generation.consents, self.generation.media_url
        )
        self.experiments = ExperimentRepository(
            self.store, cache_ttl_s=settings.experiments.cache_ttl_s
        )

        # Called with every committed event batch after the serving state is updated (also
        # with the batches a follower reads from other workers); a listener that raises is
        # logged and skipped.
        self.event_listeners: list[Callable[[pl.DataFrame], None]] = [
            self.wellbeing.governor.on_events,  # keeps the usage tracker current
        ]
        # The same, for listeners that write to the store: only with this engine's own events
        # (the worker that committed an event acts on it once for the deployment).
        self.own_event_listeners: list[Callable[[pl.DataFrame], None]] = [
            self.generation.on_events,  # user reports queue generated clips for review
        ]
        self.health_checks: dict[str, Callable[[], dict[str, Any]]] = {
            "collab": self.collab.health,
            "learned_ranker": self.learned.health,
            "steering": self.steering.health,
            "wellbeing": self._wellbeing_health,
            "generation": self.generation.health,
            "experiments": self._experiments_health,
        }
        # Services that hold per-user memory an erasure must clear.
        self.forgetters: dict[str, Callable[[int], None]] = {
            "collab": self.collab.forget_user,
            "data_controls": self.data_controls.forget,
            # The erased person's clips are gone from the store: drop their cities too.
            "clip_cities": lambda _uid: self.clip_cities.reload(self.store),
            "standing_rules": self.steering.rules.forget_user,
            "goals": self.steering.goals.forget_user,
        }
        self.product_deps = ProductDeps(
            state=self.state,
            index=self.index,
            events=self.writer,
            hand_weights=self.hand_weights,
            max_per_author=self.feed_settings.max_per_author,
            learned=self.learned,
            collab=self.collab,
            steering=self.steering,
            wellbeing=self.wellbeing,
            generation=self.generation,
            media_access=self.media_access,
            experiments=self.experiments,
            experiment_settings=settings.experiments,
            data_controls=self.data_controls,
            clip_cities=self.clip_cities,
            local_boost=self.feed_settings.local_boost,
        )
        self.products: dict[str, RankingPipeline] = {
            HOME: build_home_feed(self.product_deps),
            FOLLOWING_ONLY: build_following_only_feed(self.product_deps),
        }
        # The serving-state gauges /metrics reads at each scrape.
        self.metrics_collector = ServingCollector(self.metrics_snapshot)
        self.index_reconciler.start()  # compares the index with the store on a thread
        self.store.release_memory()  # what start-up scanned is in the serving state now

    # -- set-up -------------------------------------------------------------------------------
    def _open_index(self) -> None:
        """Open the vector index. With the embedded Qdrant Edge shard held by another worker,
        serve from a copy of it; a worker with an index of its own (a copy, or the shard
        itself over a store other workers write) follows the store every ``index_sync_s``
        (docs/deploying.md, "Vectors for several workers")."""
        url = self.storage.resolved_index_url()
        try:
            self.index = open_index(url, api_key=self.storage.qdrant_api_key, copy_when_held=True)
            self._ensure_index(self.index)
            self.index_error = None
        except Exception as exc:  # the feed serves without ANN sources (fail open)
            self.index = None
            self.index_error = f"{type(exc).__name__}: {exc}"
            logger.exception("vector index %s unavailable; serving without ANN sources", url)
            return
        index = self.index
        shared_store = self.store.dialect != "duckdb"  # DuckDB: one process writes the store
        if isinstance(index, EdgeVectorIndex) and (shared_store or index.copy_of is not None):
            self.index_sync_s = self.storage.index_sync_s

    def _ensure_index(self, index: VectorIndex) -> None:
        """Create the caption space and the payload indexes where missing (other spaces are
        created by whoever fills them: the collab job, a repair)."""
        index.ensure(
            {CAPTION_SPACE: self.index_spaces[CAPTION_SPACE]},
            keyword_fields=("safety_label", "topics", "hashtags"),
            integer_fields=("maturity", "author_id"),
        )

    def _warm_author_stats(self) -> None:
        """Compute the author statistics once if the ``author_stats`` job has not run yet."""
        if self.state.engagement.author_stats_computed_at() is None:
            n = refresh_author_stats(self)
            logger.info("author statistics computed for %d authors before first learned page", n)

    def _wellbeing_health(self) -> dict[str, Any]:
        model = self.wellbeing.satisfaction.model
        return {"satisfaction_model": model.version if model is not None else None}

    def _experiments_health(self) -> dict[str, Any]:
        try:
            return {"running": [e.name for e in self.experiments.running()]}
        except Exception as exc:  # reported, never raised, by a health check
            return {"degraded": True, "error": f"{type(exc).__name__}: {exc}"}

    def children_of(self, parent_id: int) -> list[int]:
        """Teens linked to a parent account (API access checks)."""
        return self.wellbeing.children_of(parent_id)

    def embedding_dim(self) -> int:
        """Dimension of the caption space (384 for the default model, else from the model)."""
        if self.embedding_settings.model == DEFAULT_MODEL:
            return 384
        return self.embedder.dim

    def _secret(self) -> bytes:
        if self.storage.secret_key is not None:  # shared by workers on several machines
            return self.storage.secret_key.get_secret_value().encode()
        path = self.data_dir / "cursor.key"
        if not path.exists():
            path.write_bytes(secrets.token_bytes(32))
            os.chmod(path, 0o600)
        return path.read_bytes()

    def secret_for(self, purpose: str) -> bytes:
        """A key for one purpose (media links, erasure confirmations), derived from the data
        folder's secret, which is not in the store."""
        return derive(self._secret(), purpose)

    def pseudonym(self, user_id: int) -> str:
        """The keyed stand-in for a user in records that outlive them (the audit log)."""
        return pseudonym(user_id, self.pseudonym_key)

    @property
    def embedder(self) -> TextEmbedder:
        """The caption embedder (loaded on first use)."""
        with self._embedder_lock:
            if self._embedder is None:
                self._embedder = shared_embedder(self.embedding_settings)
            return self._embedder

    def close(self, *, effects_timeout_s: float = 10.0) -> None:
        """Wait for served pages' side effects (up to ``effects_timeout_s``), flush pending
        writes and close the stores."""
        for stop in self.on_close:
            try:
                stop()
            except Exception:  # closing goes on
                logger.exception("stopping %r failed", stop)
        with self._effects_lock:
            pending = list(self._effects)
        if pending:
            _, late = wait_futures(pending, timeout=effects_timeout_s)
            if late:
                logger.warning("closing with %d page side effects still running", len(late))
        self.index_reconciler.close()
        self.writer.close()
        if self.index is not None:
            self.index.close()
        self.store.close()

    # -- writes -------------------------------------------------------------------------------
    def add_users(self, users: pl.DataFrame) -> int:
        """Insert users and make them servable."""
        n = self.store.add_users(users)
        self.state.profiles.add_users(users)
        return n

    def _refuse_erased(self, frame: pl.DataFrame, columns: tuple[str, ...]) -> None:
        """Raise :class:`UserErasedError` when ``frame`` names a user being erased."""
        closed = self.fence.closed
        if not closed:
            return
        named = {int(u) for c in columns if c in frame.columns for u in frame[c].drop_nulls()}
        if not closed.isdisjoint(named):
            msg = "unknown user: it was erased"
            raise UserErasedError(msg)

    def add_follows(self, follows: pl.DataFrame) -> int:
        """Insert follow edges."""
        self._refuse_erased(follows, ("follower_id", "followee_id"))
        n = self.store.add_follows(follows)
        self.state.graph.add_follows(follows)
        return n

    def add_blocks(self, blocks: pl.DataFrame) -> int:
        """Insert blocks/mutes."""
        self._refuse_erased(blocks, ("user_id", "target_id"))
        n = self.store.add_blocks(blocks)
        self.state.graph.add_blocks(blocks)
        return n

    def add_clips(self, clips: pl.DataFrame, *, embed: bool = True) -> int:
        """Insert clips, embed their captions and index them (when ``embed``).

        Clips by or showing a user being erased are refused (:class:`UserErasedError`).
        """
        self._refuse_erased(clips, ("author_id",))
        if self.fence.closed and "cameo_user_ids" in clips.columns:
            self._refuse_erased(clips.explode("cameo_user_ids"), ("cameo_user_ids",))
        n = self.store.add_clips(clips)
        full = self.store.query(
            "SELECT * FROM clips WHERE item_id IN (SELECT unnest(?::BIGINT[]))",
            [clips["item_id"].to_list()],
        )
        self.state.add_clips(full)
        self.clip_cities.add(full)
        if embed:
            self.index_clips(full)
        return n

    def index_clips(
        self, clips: pl.DataFrame, *, show_progress: bool = False, batch: int = 4096
    ) -> int:
        """Embed captions (each distinct caption once) and upsert them into the index."""
        if clips.height == 0:
            return 0
        captions = clips["caption"].to_list()
        uniq = list(dict.fromkeys(captions))
        emb = self.embedder.embed(uniq, show_progress=show_progress)
        pos = {c: i for i, c in enumerate(uniq)}
        caption_row = np.fromiter((pos[c] for c in captions), np.int64, len(captions))
        ids_all = clips["item_id"].to_numpy().astype(np.int64)
        # In slices: at a million clips the whole vector matrix, its store frame and the index
        # batch at once would take several GB.
        for start in range(0, clips.height, 25 * batch):
            stop = start + 25 * batch
            ids, mat = ids_all[start:stop], emb[caption_row[start:stop]]
            self.store.put_vectors(CAPTION_SPACE, ids, mat)
            self.state.set_vectors(ids, mat)
            if self.index is not None:
                try:
                    for b in range(0, len(ids), batch):
                        part = clips.slice(start + b, batch)
                        self.index.upsert(
                            ids[b : b + batch],
                            {CAPTION_SPACE: mat[b : b + batch]},
                            clip_payloads(part),
                        )
                except IndexUnavailableError as exc:
                    # The clips and their vectors are committed (the store is the source of
                    # truth); the index job adds what the index missed.
                    logger.exception("vector index upsert failed; %d clips not indexed", len(ids))
                    self.index_reconciler.note_write_failure(clips.height - start, exc)
                    break
        return clips.height

    def ingest_events(self, events: pl.DataFrame) -> int:
        """Commit events (idempotent by ``(user_id, event_id)``), then update serving state.

        Returns the number of new events; only those update the counters.
        """
        new_keys = self.store.append_new_events(events)
        n = len(new_keys)
        if n < events.height:  # repeats of stored events, or of each other within the batch
            new = set(new_keys)
            keys = zip(events["user_id"].to_list(), events["event_id"].to_list(), strict=True)
            mask = pl.Series([k in new for k in keys], dtype=pl.Boolean)
            fresh = events.filter(mask).unique(
                subset=["user_id", "event_id"], keep="first", maintain_order=True
            )
        else:
            fresh = events
        self._events_committed(fresh)
        self.telemetry.events_ingested(n, events.height - n)
        return n

    def _without_erased(self, events: pl.DataFrame) -> pl.DataFrame:
        """Events minus those by or about users being erased (fenced: storage/fence.py)."""
        closed = self.fence.closed
        if not closed or events.height == 0:
            return events
        gone = sorted(closed)
        keep = ~pl.col("user_id").is_in(gone)
        if "target_user_id" in events.columns:
            keep &= ~pl.col("target_user_id").is_in(gone).fill_null(False)
        return events.filter(keep)

    def apply_followed_events(self, events: pl.DataFrame) -> None:
        """Apply events another writer committed, read from the shared log by a follower
        (``pipelines/serving/follower.py``): the serving state and the memory-only listeners."""
        self._events_committed(events, own=False)

    def _events_committed(self, events: pl.DataFrame, *, own: bool = True) -> None:
        """Update serving state, then tell the listeners, about newly committed events
        (``own``: committed by this engine; else read from the log another writer wrote)."""
        events = self._without_erased(events)
        self.state.apply_events(events)
        listeners = self.event_listeners + self.own_event_listeners if own else self.event_listeners
        for listener in listeners:
            try:
                listener(events)
            except Exception:
                logger.exception("event listener %r failed", listener)

    # -- reads --------------------------------------------------------------------------------
    def require_user(self, user_id: int) -> None:
        """Raise :class:`UnknownEntityError` for a user the store does not hold."""
        if user_id not in self.state.profiles.users:
            msg = f"unknown user {user_id}; create it with POST /v1/users first"
            raise UnknownEntityError(msg)

    def feed(
        self,
        user_id: int,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        product: str = "home",
        now: datetime | None = None,
        overrides: RequestOverrides | None = None,
        city: str | None = None,
    ) -> FeedPage:
        """Serve one page of a product for a user.

        ``city`` is a city the client passes for this request (used only while the person
        allows location); it is checked first (:class:`~ranking.data_controls.
        DataControlsError` for coordinates or a city no clip comes from).

        The page and its side effects (impressions, a survey prompt) run inside the user's
        fence, so an erasure waits for them and none of them writes after it.
        """
        resolved = self.data_controls.resolve_city(city) if city is not None else None
        t0 = time.perf_counter()
        request_id = current_request_id() or new_request_id()
        with self.telemetry.page_span(request_id) as span:
            held = self.fence.enter([user_id])
            try:
                self.require_user(user_id)
                page, effects = self._feed(
                    user_id, limit, cursor, product, now, overrides, request_id, city=resolved
                )
            except BaseException as exc:
                self.fence.leave(held)
                refused = isinstance(exc, UnknownEntityError | BadCursorError | UserErasedError)
                self.telemetry.page_failed(product, refused=refused)
                raise
            self._leave_when_done(held, effects)
            if span is not None and span.is_recording():  # an unsampled page keeps none
                span.set_attributes(
                    {
                        "steerfeed.product": page.pipeline,
                        "steerfeed.page": page.page,
                        "steerfeed.items": len(page.items),
                        "steerfeed.degraded_sources": ",".join(page.degraded_sources),
                    }
                )
        self.telemetry.page_served(page, time.perf_counter() - t0)
        return page

    def _leave_when_done(self, held: tuple[int, ...], effects: list[Any]) -> None:
        pending = [f for f in effects if not f.done()]
        if not pending:
            self.fence.leave(held)
            return
        with self._effects_lock:
            self._effects.update(pending)
        for f in pending:
            f.add_done_callback(self._effect_done)
        left = [len(pending)]
        lock = threading.Lock()

        def one_done(_: Any) -> None:
            with lock:
                left[0] -= 1
                last = left[0] == 0
            if last:
                self.fence.leave(held)

        for f in pending:
            f.add_done_callback(one_done)

    def _effect_done(self, future: Future[None]) -> None:
        with self._effects_lock:
            self._effects.discard(future)

    def _feed(
        self,
        user_id: int,
        limit: int | None,
        cursor: str | None,
        product: str,
        now: datetime | None,
        overrides: RequestOverrides | None,
        request_id: str,
        *,
        city: str | None = None,
    ) -> tuple[FeedPage, list[Any]]:
        limit = min(limit or self.feed_settings.default_limit, self.feed_settings.max_limit)
        now = now or datetime.now(UTC).replace(tzinfo=None)
        if cursor:
            cur = self.cursors.decode(cursor, user_id=user_id)
        else:
            cur = Cursor(user_id, uuid.uuid4().hex[:16], 0, frozenset())
        query = FeedQuery(
            user_id=user_id,
            limit=limit,
            now=now,
            session_id=cur.session_id,
            request_id=request_id,
            page=cur.page,
            exclude_ids=cur.served,
            overrides=overrides or NO_OVERRIDES,
            city=city,
        )
        pipeline = self.products[self.choose_product(user_id, product)]
        result = pipeline.run(query, observer=self.telemetry)
        degraded = list(result.failed_sources)
        if self.index is not None and self.index_reconciler.degraded() is not None:
            # The index-backed sources answered from an index that lacks clips: say so.
            degraded += [
                s.name
                for s in pipeline.sources
                if getattr(s, "index", None) is self.index and s.name not in degraded
            ]
        page = self._to_page(result, cur, pipeline.name, degraded)
        return page, list(result.effects)

    def choose_product(self, user_id: int, requested: str) -> str:
        """The product to serve (see :func:`~pipelines.serving.products.choice.choose_product`)."""
        return choose_product(self.state, self.wellbeing.governor, user_id, requested)

    def _to_page(
        self, result: PipelineResult, cur: Cursor, pipeline_name: str, degraded: list[str]
    ) -> FeedPage:
        page = result.page
        st = self.state
        weights = self.hand_weights.model_dump()
        items: list[FeedItem] = []
        for row in page.iter_rows(named=True):
            r = int(row["row"])
            logged = row.get("_contributions")
            contribs: list[tuple[str, float]] = (
                [(str(c["feature"]), float(c["value"])) for c in logged]
                if logged
                else top_contributions(row, weights)
            )
            source = str(row["source"])
            # What the post-selection hydrators annotated (null fields: not filled for it).
            explained = {k: v for k, v in (row.get("_explain") or {}).items() if v is not None}
            items.append(
                FeedItem(
                    item_id=int(row["item_id"]),
                    author_id=int(row["author_id"]),
                    caption=st.catalogue.captions[r],
                    topics=list(st.catalogue.topics[r]),
                    position=int(row["position"]),
                    score=float(row["score"]),
                    source=source,
                    reason=reason_text(source, contribs, facts=row),
                    is_generated=bool(st.catalogue.generated[r]),
                    explanation=Explanation(
                        source=source,
                        top_features=[
                            FeatureContribution(feature=n, contribution=round(v, 4))
                            for n, v in contribs
                        ],
                        **explained,
                    ),
                )
            )
        served = cur.served | frozenset(i.item_id for i in items)
        next_cursor = (
            self.cursors.encode(Cursor(cur.user_id, cur.session_id, cur.page + 1, served))
            if items
            else None
        )
        ctx = result.query.context
        return FeedPage(
            user_id=cur.user_id,
            request_id=result.query.request_id,
            session_id=cur.session_id,
            page=cur.page,
            items=items,
            next_cursor=next_cursor,
            pipeline=pipeline_name,
            degraded_sources=degraded,
            governor=ctx.get(GovernorCard),
            survey=ctx.get(SurveyCard),
            stop_card=ctx.get(StopCard),
        ).with_diagnostics(
            PageDiagnostics(
                removed=result.removed,
                timings_ms=result.timings_ms,
                n_candidates=result.n_candidates,
                skipped=result.skipped,
                context=ctx,
                overrides=result.query.overrides,
            )
        )

    def readiness(self) -> dict[str, Any]:
        """Whether this server should get traffic, part by part (``/readyz``).

        ``store`` answers a query; ``concepts``: the concept catalogue is built (moods and
        standing rules wait for it; ``building`` means not ready). ``index`` and ``model``
        degrade the feed but never stop it (the ANN sources are dropped, the hand-weighted
        scorer serves), so they are named in ``degraded`` and the server stays ready.
        """
        parts: dict[str, str] = {}
        not_ready: list[str] = []
        degraded: list[str] = []
        try:
            self.store.scalar("SELECT 1")
            parts["store"] = "ok"
        except Exception as exc:  # reported, never raised, by a probe
            parts["store"] = f"unavailable: {type(exc).__name__}: {exc}"
            not_ready.append("store")
        if self.index is None:
            parts["index"] = f"unavailable: {self.index_error}"
            degraded.append("index")
        else:
            problem = self.index_reconciler.degraded()
            parts["index"] = "ok" if problem is None else f"degraded: {problem}"
            if problem is not None:
                degraded.append("index")
        learned = self.learned.health()
        if learned.get("degraded"):
            parts["model"] = f"degraded: {learned.get('error')}; hand_weighted serves"
            degraded.append("model")
        else:
            parts["model"] = f"ok: {learned.get('serving')}"
        concepts = self.steering.concepts.status()
        parts["concepts"] = concepts
        if concepts == "building":
            not_ready.append("concepts")
        return {
            "ready": not not_ready,
            "parts": parts,
            "not_ready": not_ready,
            "degraded": degraded,
        }

    def metrics_snapshot(self) -> ServingSnapshot:
        """The serving-state gauges ``/metrics`` reads at each scrape."""
        ready = self.readiness()
        learned = self.learned.health()
        try:
            generation = self.generation.queue.counts()
        except Exception:  # a scrape reports what it can
            logger.warning("generation queue counts unavailable for /metrics", exc_info=True)
            generation = {}
        return ServingSnapshot(
            ready={p: p not in ready["not_ready"] for p in READY_PARTS},
            degraded={p: p in ready["degraded"] for p in READY_PARTS},
            impression_queue_frames=self.writer.pending(),
            model_version=str(learned.get("serving")),
            model_degraded=bool(learned.get("degraded")),
            generation_jobs=generation,
            clips=len(self.state.catalogue.item_ids),
            users=len(self.state.profiles.users),
        )

    def health(self) -> dict[str, Any]:
        """Liveness and what is degraded."""
        checks = {name: fn() for name, fn in self.health_checks.items()}
        if self.index is None:
            index = f"unavailable: {self.index_error}"
        else:
            problem = self.index_reconciler.degraded()
            index = "ok" if problem is None else f"degraded: {problem}"
        writer = self.writer.stats()
        degraded = (
            index != "ok"
            or writer["last_error"] is not None
            or any(isinstance(v, dict) and v.get("degraded") for v in checks.values())
        )
        return {
            **checks,
            "status": "degraded" if degraded else "ok",
            "clips": len(self.state.catalogue.item_ids),
            "users": len(self.state.profiles.users),
            "index": index,
            "index_reconcile": self.index_reconciler.state(),
            "event_writer": writer,
            "time": time.time(),
        }


READY_PARTS = ("store", "index", "model", "concepts")


def clip_payloads(clips: pl.DataFrame) -> list[dict[str, Any]]:
    """Index payloads for clips: the fields ANN searches filter on."""
    out = []
    cols = clips.columns
    for row in clips.iter_rows(named=True):
        out.append(
            {
                "author_id": int(row["author_id"]),
                "safety_label": (row.get("safety_label") if "safety_label" in cols else None)
                or "safe",
                "maturity": int(row.get("maturity") or 0),
                "topics": list(row.get("topics") or []),
                "hashtags": list(row.get("hashtags") or []),
                "is_generated": bool(row.get("is_generated") or False),
            }
        )
    return out


def open_engine(data_dir: Path | str, settings: SteerfeedSettings | None = None) -> Engine:
    """Open an engine on a data directory (``settings``: default from the environment)."""
    root = settings if settings is not None else SteerfeedSettings()
    storage = root.storage.model_copy(update={"data_dir": Path(data_dir)})
    return Engine(root.model_copy(update={"storage": storage}))
