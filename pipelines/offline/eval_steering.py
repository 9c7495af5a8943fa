"""Steering benchmark on the MicroLens catalogue: do typed moods steer the next page?

Protocol
--------
1. The MicroLens titles (with their hashtags, likes and views) are imported as clips into a
   private store (``data_dir/world``); caption vectors are cached in ``data_dir`` so a rebuilt
   world (other users, another ``limit``) does not embed again. ``limit`` keeps a seeded
   random sample of the catalogue, for quick iterations.
   The ``category`` label is **never** imported: it is read only by :func:`score_pages`.
2. Test users get histories built around random clusters of title embeddings (spherical
   k-means on the caption vectors; each user likes clips drawn from two random clusters), so
   nothing about a user is derived from the categories.
3. For each prompt and each user the user's moods are cleared, the no-mood page is served
   (prompt ``""``), the prompt is set as a session mood and the next page is served. Both pages
   (top ``page_size``) are written as Parquet ``prompt, user_id, item_id, rank`` (MicroLens ids).
   Evaluation pages are not logged as impressions (they would mark clips as seen).
4. :func:`score_pages` scores the pages against the categories: compliance@10 (share of the top
   10 in the prompt's intended categories) and negation removal (share of the avoided categories
   in the top 20, against the same user's no-mood page).
5. The baseline (:func:`baseline_pages`): plain cosine nearest neighbours of the prompt's
   facets on the titles, ignoring the user, and a plain cosine threshold on the titles for
   negations; scored the same way.

Latency: each page is timed; the report gives p50/p99 of pages with and without a mood, the
paired difference (what the mood adds, noisy on a loaded machine: the load average is reported)
and the time spent inside the steering components of mood pages (``steering_stages_ms``).
Setting a mood (parsing and scoring its concepts, cached per phrase) happens when the prompt is
posted, not when a page is served, and is reported separately.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from pipelines.importers.errors import ImporterError
from pipelines.importers.generic import check_clip_authors, import_frame
from pipelines.importers.microlens import ITEMS_FILE, load_microlens_categories, microlens_clips
from ranking.side_effects.log_impressions import LogImpressionsSideEffect

logger = logging.getLogger(__name__)

WORLD_MARKER = "steering_world.json"
USER_ID_BASE = 1_000_000


class SteeringEvalError(Exception):
    """Bad benchmark input (prompts file, data folder)."""


class PromptSpec(BaseModel):
    """One benchmark prompt; ``categories``/``avoid`` are used only to score the pages."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=500)
    categories: list[str] = Field(default_factory=list)
    avoid: list[str] = Field(default_factory=list)
    split: Literal["tune", "heldout"] = "heldout"


Split = Literal["tune", "heldout"]
SPLITS: tuple[str, ...] = ("tune", "heldout")


class WorldConfig(BaseModel):
    """The evaluation world: how many users and how their histories are drawn.

    Users are split like prompts: the first ``n_tune_users`` are the tuning users, the rest the
    held-out users (:func:`split_users`). Settings are chosen on tuning prompts x tuning users
    only; held-out prompts x held-out users are run once, at the end, and reported as such.
    """

    model_config = ConfigDict(extra="forbid")

    n_users: int = Field(default=64, ge=1)
    n_tune_users: int = Field(default=16, ge=0)
    history_len: int = Field(default=30, ge=1)
    n_clusters: int = Field(default=40, ge=2)
    clusters_per_user: int = Field(default=2, ge=1)
    seed: int = 0
    limit_clips: int | None = Field(default=None, ge=10)


def split_users(users: list[int], cfg: WorldConfig, split: Split) -> list[int]:
    """The tuning users (the first ``cfg.n_tune_users``) or the held-out users (the rest).

    Raises
    ------
    SteeringEvalError
        The split holds no user.
    """
    if split not in SPLITS:
        msg = f"unknown split {split!r}; valid: {', '.join(SPLITS)}"
        raise SteeringEvalError(msg)
    chosen = users[: cfg.n_tune_users] if split == "tune" else users[cfg.n_tune_users :]
    if not chosen:
        msg = (
            f"the {split} split holds no user ({cfg.n_users} users, {cfg.n_tune_users} for "
            "tuning); raise --users or change --tune-users"
        )
        raise SteeringEvalError(msg)
    return chosen


def load_prompts(path: Path) -> list[PromptSpec]:
    """Read a JSON list of ``{"prompt": ..., "categories": [...], "avoid": [...], "split": ...}``.

    Raises
    ------
    SteeringEvalError
        The file is missing, not JSON, or an entry is invalid (the message names the entry).
    """
    if not path.is_file():
        msg = f"prompts file not found: {path}"
        raise SteeringEvalError(msg)
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        msg = f"{path} is not JSON: {exc}"
        raise SteeringEvalError(msg) from exc
    try:
        prompts = TypeAdapter(list[PromptSpec]).validate_python(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = f"{path}: entry {'.'.join(str(x) for x in err['loc'])}: {err['msg']}"
        raise SteeringEvalError(msg) from exc
    if not prompts:
        msg = f"{path} holds no prompts; expected a JSON list of {{'prompt': ...}}"
        raise SteeringEvalError(msg)
    return prompts


# -- the world ----------------------------------------------------------------------------------
EMBEDDINGS_FILE = "caption_embeddings.npz"


def cached_caption_embeddings(
    clips: pl.DataFrame, cache_dir: Path, embedder: Any, *, progress: bool = False
) -> np.ndarray:
    """Caption vectors of ``clips`` (row order kept), read from ``cache_dir`` when cached.

    The cache maps each distinct caption to its vector and records the model name, so later
    runs (other users, another ``--limit``) embed only captions not seen before: embedding all
    ~19.7k MicroLens titles takes ~20 minutes on two loaded CPU cores.
    """
    path = cache_dir / EMBEDDINGS_FILE
    model = str(getattr(getattr(embedder, "settings", None), "model", "unknown"))
    known: dict[str, np.ndarray] = {}
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if str(z["model"]) == model:
                known = dict(zip(z["keys"].tolist(), z["vectors"], strict=True))
            else:
                logger.info("embedding cache %s is for model %s; ignoring it", path, z["model"])
    captions = clips["caption"].fill_null("").to_list()
    keys = [caption_key(c) for c in captions]
    todo = {k: c for k, c in zip(keys, captions, strict=True) if k not in known}
    if todo:
        t0 = time.perf_counter()
        vecs = embedder.embed(list(todo.values()), show_progress=progress)
        known.update(zip(todo, vecs, strict=True))
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(
            tmp,
            model=np.asarray(model),
            keys=np.asarray(list(known), dtype="U16"),
            vectors=np.vstack(list(known.values())).astype(np.float32),
        )
        tmp.replace(path)
        logger.info(
            "embedded %d new captions in %.0f s (cache %s holds %d)",
            len(todo),
            time.perf_counter() - t0,
            path,
            len(known),
        )
    return np.vstack([known[k] for k in keys]).astype(np.float32)


def caption_key(caption: str) -> str:
    """Cache key of a caption (a short BLAKE2 digest; the cache stays small)."""
    return hashlib.blake2b(caption.encode(), digest_size=8).hexdigest()


def read_clips(microlens_dir: Path, *, limit: int | None = None, seed: int = 0) -> pl.DataFrame:
    """MicroLens items as clip rows (the ``category`` column is never read).

    ``limit`` keeps a uniform random sample of that many items (seeded), for quick iterations.
    """
    path = microlens_dir / ITEMS_FILE
    cols = ["video_id", "title_full_50k", "title_100k", "likes", "views"]
    items = pl.read_parquet(path, columns=cols).sort("video_id")
    if limit is not None and limit < items.height:
        items = items.sample(n=limit, seed=seed).sort("video_id")
    return microlens_clips(items)


def open_world(
    microlens_dir: Path, data_dir: Path, cfg: WorldConfig, *, progress: bool = False
) -> tuple[Any, list[int]]:
    """Open (building when needed) the evaluation engine: clips, vectors, users and histories.

    The engine lives in ``data_dir/world`` and is rebuilt when ``cfg`` changes; caption vectors
    are cached in ``data_dir`` (:func:`cached_caption_embeddings`) and survive rebuilds.
    Returns the engine and the test user ids.
    """
    from pipelines.serving.engine import open_engine

    if not (microlens_dir / ITEMS_FILE).is_file():
        msg = f"no {ITEMS_FILE} in {microlens_dir}; pass the MicroLens folder with --data"
        raise SteeringEvalError(msg)
    work_dir = data_dir / "world"
    marker = work_dir / WORLD_MARKER
    want = cfg.model_dump()
    if marker.exists() and json.loads(marker.read_text()) != want:
        logger.info("evaluation world in %s was built with other settings; rebuilding", work_dir)
    fresh = not marker.exists() or json.loads(marker.read_text()) != want
    if fresh and work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if fresh:
        from storage.store import Store

        clips = read_clips(microlens_dir, limit=cfg.limit_clips, seed=cfg.seed)
        store = Store(work_dir / "steerfeed.duckdb")
        try:
            check_clip_authors(store, clips, source="microlens:clips")
            import_frame(store, "clips", clips, progress=progress, source="microlens:clips")
        except ImporterError as exc:
            raise SteeringEvalError(str(exc)) from exc
        finally:
            store.close()
    engine = open_engine(work_dir)
    if fresh:
        clips = engine.store.query("SELECT * FROM clips ORDER BY item_id")
        vectors = cached_caption_embeddings(clips, data_dir, engine.embedder, progress=progress)
        _put_vectors(engine, clips, vectors)
        _make_users(engine, cfg)
        marker.write_text(json.dumps(want))
    users = [USER_ID_BASE + i for i in range(cfg.n_users)]
    return engine, users


def _put_vectors(engine: Any, clips: pl.DataFrame, vectors: np.ndarray) -> None:
    """What ``Engine.index_clips`` does, with vectors from the cache instead of the model."""
    from pipelines.serving.engine import CAPTION_SPACE, clip_payloads

    ids = clips["item_id"].to_numpy().astype(np.int64)
    engine.store.put_vectors(CAPTION_SPACE, ids, vectors)
    engine.state.set_vectors(ids, vectors)
    if engine.index is not None:
        batch = 4096
        for start in range(0, clips.height, batch):
            engine.index.upsert(
                ids[start : start + batch],
                {CAPTION_SPACE: vectors[start : start + batch]},
                clip_payloads(clips.slice(start, batch)),
            )


def spherical_kmeans(x: np.ndarray, k: int, *, seed: int = 0, iters: int = 15) -> np.ndarray:
    """Cluster unit vectors by cosine (k-means++-style seeding); return each row's cluster."""
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    centers = x[rng.choice(n, size=k, replace=False)].copy()
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iters):
        labels = np.argmax(x @ centers.T, axis=1)
        for c in range(k):
            members = x[labels == c]
            if len(members):
                v = members.sum(axis=0)
                centers[c] = v / max(float(np.linalg.norm(v)), 1e-9)
            else:
                centers[c] = x[rng.integers(n)]
    return labels


def _make_users(engine: Any, cfg: WorldConfig) -> None:
    st = engine.state
    n = len(st.catalogue.item_ids)
    ok = np.flatnonzero(st.catalogue.has_vector[:n])
    labels = spherical_kmeans(
        st.catalogue.vectors[ok].astype(np.float32), cfg.n_clusters, seed=cfg.seed
    )
    sizes = np.bincount(labels, minlength=cfg.n_clusters)
    # A cluster must hold a user's share of the history (histories have no repeats).
    per_cluster = int(np.ceil(cfg.history_len / cfg.clusters_per_user))
    usable = np.flatnonzero(sizes >= per_cluster)
    if len(usable) < cfg.clusters_per_user:
        msg = (
            f"only {len(usable)} of {cfg.n_clusters} title clusters hold {per_cluster} clips; "
            "use fewer clusters, a shorter history or more clips"
        )
        raise SteeringEvalError(msg)
    rng = np.random.default_rng(cfg.seed + 1)
    ids = [USER_ID_BASE + i for i in range(cfg.n_users)]
    engine.add_users(pl.DataFrame({"user_id": ids}, schema={"user_id": pl.Int64}))
    now = datetime.now(UTC).replace(tzinfo=None)
    rows: list[dict[str, Any]] = []
    for uid in ids:
        chosen = rng.choice(usable, size=min(cfg.clusters_per_user, len(usable)), replace=False)
        per = int(np.ceil(cfg.history_len / len(chosen)))
        picks: list[int] = []
        for c in chosen:
            members = ok[labels == c]
            picks.extend(rng.choice(members, size=per, replace=False).tolist())
        for j, r in enumerate(picks[: cfg.history_len]):
            item = int(st.catalogue.item_ids[r])
            ts = now - timedelta(hours=float(rng.uniform(1, 72)))
            for et in ("view", "like"):
                rows.append(
                    {
                        "event_id": f"steer-{uid}-{j}-{et}",
                        "user_id": uid,
                        "item_id": item,
                        "event_type": et,
                        "ts": ts,
                        "watch_s": 20.0 if et == "view" else None,
                        "watch_frac": 0.95 if et == "view" else None,
                    }
                )
    engine.ingest_events(pl.DataFrame(rows))


# -- running ------------------------------------------------------------------------------------
class _SteeringStageTimer:
    """Times the steering components of a pipeline (mood query hydrator, source, filter and
    scorer) by wrapping their methods on the instances, for the duration of the benchmark.

    Their sum per page is the work a mood adds, without the noise of the rest of the page on a
    loaded machine (the paired page difference is reported too).
    """

    _METHODS = {"query_hydrators": "hydrate", "sources": "fetch", "filters": "apply"}

    def __init__(self, pipeline: Any) -> None:
        from steering.filters.mood_exclusions import MoodExclusionsFilter
        from steering.query_hydrators.active_mood import ActiveMoodQueryHydrator
        from steering.scorers.mood import MoodScorer
        from steering.sources.mood import MoodSource

        kinds = (ActiveMoodQueryHydrator, MoodSource, MoodExclusionsFilter, MoodScorer)
        self.current = 0.0
        self._lock = threading.Lock()
        self._wrapped: list[tuple[Any, str]] = []
        for stage in ("query_hydrators", "sources", "filters", "scorers"):
            for comp in getattr(pipeline, stage):
                if isinstance(comp, kinds):
                    self._wrap(comp, self._METHODS.get(stage, "score"))

    def _wrap(self, comp: Any, method: str) -> None:
        inner = getattr(comp, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                with self._lock:
                    self.current += (time.perf_counter() - t0) * 1e3

        setattr(comp, method, timed)
        self._wrapped.append((comp, method))

    def take(self) -> float:
        """Milliseconds spent in the steering components since the last call."""
        with self._lock:
            out, self.current = self.current, 0.0
        return out

    def remove(self) -> None:
        """Restore the components' own methods."""
        for comp, method in self._wrapped:
            delattr(comp, method)


def run_pages(
    engine: Any,
    users: list[int],
    prompts: list[PromptSpec],
    *,
    page_size: int = 20,
    progress: bool = False,
) -> tuple[pl.DataFrame, dict[str, Any], dict[int, list[int]]]:
    """Serve the no-mood and the mood page of every user for every prompt.

    Returns the pages (``prompt, user_id, item_id, rank``; the no-mood page under ``""``), the
    latency report and each user's longer no-mood ranking (``2 * page_size``, for the baseline).
    """
    from rich.progress import Progress

    steering = engine.steering
    home = engine.products["home"]
    # Evaluation pages are not impressions: logging them would mark the clips as seen.
    engine.products["home"] = replace(
        home,
        side_effects=[e for e in home.side_effects if not isinstance(e, LogImpressionsSideEffect)],
    )
    timer = _SteeringStageTimer(engine.products["home"])
    stage_ms: list[float] = []
    recs: dict[str, list[Any]] = {"prompt": [], "user_id": [], "item_id": [], "rank": []}
    base_ms: list[float] = []
    mood_ms: list[float] = []
    set_ms: list[float] = []
    no_mood: dict[int, list[int]] = {}

    def record(prompt: str, uid: int, items: list[int]) -> None:
        for rank, item in enumerate(items, start=1):
            recs["prompt"].append(prompt)
            recs["user_id"].append(uid)
            recs["item_id"].append(item)
            recs["rank"].append(rank)

    # Warm-up: the first page pays for lazy loads (model, catalogue structures).
    for uid in users:
        steering.moods.clear(uid)
        no_mood[uid] = [i.item_id for i in engine.feed(uid, limit=2 * page_size).items]
        record("", uid, no_mood[uid][:page_size])
    with Progress(disable=not progress) as bar:
        task = bar.add_task("steering pages", total=len(prompts) * len(users))
        for spec in prompts:
            for uid in users:
                steering.moods.clear(uid)
                t0 = time.perf_counter()
                page = engine.feed(uid, limit=page_size)
                base_ms.append((time.perf_counter() - t0) * 1e3)
                t0 = time.perf_counter()
                steering.moods.create(uid, spec.prompt, scope="session")
                set_ms.append((time.perf_counter() - t0) * 1e3)
                timer.take()
                t0 = time.perf_counter()
                page = engine.feed(uid, limit=page_size)
                mood_ms.append((time.perf_counter() - t0) * 1e3)
                stage_ms.append(timer.take())
                record(spec.prompt, uid, [i.item_id for i in page.items])
                steering.moods.clear(uid)
                bar.advance(task)
    timer.remove()
    engine.products["home"] = home
    b = np.asarray(base_ms)
    m = np.asarray(mood_ms)
    latency = {
        "pages": len(mood_ms),
        "no_mood_ms_p50": round(float(np.percentile(b, 50)), 2),
        "no_mood_ms_p99": round(float(np.percentile(b, 99)), 2),
        "mood_ms_p50": round(float(np.percentile(m, 50)), 2),
        "mood_ms_p99": round(float(np.percentile(m, 99)), 2),
        "added_ms_p50": round(float(np.percentile(m - b, 50)), 2),
        "added_ms_p99": round(float(np.percentile(m - b, 99)), 2),
        "added_ms_p99_of_pages": round(float(np.percentile(m, 99) - np.percentile(b, 99)), 2),
        "steering_stages_ms_p50": round(float(np.percentile(stage_ms, 50)), 2),
        "steering_stages_ms_p99": round(float(np.percentile(stage_ms, 99)), 2),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "set_mood_ms_p50": round(float(np.percentile(set_ms, 50)), 2),
        "set_mood_ms_p99": round(float(np.percentile(set_ms, 99)), 2),
    }
    pages = pl.DataFrame(
        recs,
        schema={"prompt": pl.String, "user_id": pl.Int64, "item_id": pl.Int64, "rank": pl.Int32},
    )
    return pages, latency, no_mood


# -- baseline -----------------------------------------------------------------------------------
BASELINE_THRESHOLD = 0.35
"""Cosine between a title and a negated phrase above which the baseline drops the clip."""


def baseline_pages(
    engine: Any,
    prompts: list[PromptSpec],
    no_mood: dict[int, list[int]],
    *,
    page_size: int = 20,
    threshold: float = BASELINE_THRESHOLD,
) -> pl.DataFrame:
    """Plain cosine nearest neighbours on the titles, ignoring the user (the baseline).

    The prompt is parsed as for a mood. With positive facets the page is the ``page_size`` clips
    whose title is closest (max cosine over the facets) to them, the same for every user; with
    only negations it is the user's no-mood ranking. Either way clips whose title has cosine
    above ``threshold`` with a negated phrase are dropped.
    """
    from steering.errors import MoodParseError
    from steering.prompt_parser import parse_mood

    st = engine.state
    n = len(st.catalogue.item_ids)
    vecs = st.catalogue.vectors[:n]
    has = st.catalogue.has_vector[:n]
    ids = np.asarray(st.catalogue.item_ids[:n], dtype=np.int64)
    emb = engine.embedder
    recs: dict[str, list[Any]] = {"prompt": [], "user_id": [], "item_id": [], "rank": []}
    for spec in prompts:
        try:
            parsed = parse_mood(spec.prompt)
        except MoodParseError:
            continue
        positive = [*parsed.facets, *parsed.restrict_to]
        banned = np.zeros(n, dtype=bool)
        for phrase in parsed.exclusions:
            banned |= (vecs @ emb.embed_one(phrase)) > threshold
        shared: list[int] | None = None
        if positive:
            sim = np.max(np.vstack([vecs @ emb.embed_one(f) for f in positive]), axis=0)
            sim = np.where(has & ~banned, sim, -np.inf)
            top = np.argsort(-sim)[:page_size]
            shared = ids[top].tolist()
        for uid, ranking in no_mood.items():
            if shared is not None:
                page = shared
            else:
                page = [i for i in ranking if not banned[st.catalogue.row_of[i]]][:page_size]
            for rank, item in enumerate(page, start=1):
                recs["prompt"].append(spec.prompt)
                recs["user_id"].append(uid)
                recs["item_id"].append(int(item))
                recs["rank"].append(rank)
    for uid, ranking in no_mood.items():
        for rank, item in enumerate(ranking[:page_size], start=1):
            recs["prompt"].append("")
            recs["user_id"].append(uid)
            recs["item_id"].append(int(item))
            recs["rank"].append(rank)
    return pl.DataFrame(
        recs,
        schema={"prompt": pl.String, "user_id": pl.Int64, "item_id": pl.Int64, "rank": pl.Int32},
    )


# -- scoring ------------------------------------------------------------------------------------
def score_pages(
    pages: pl.DataFrame, categories: pl.DataFrame, prompts: list[PromptSpec]
) -> dict[str, Any]:
    """Compliance@10 and negation removal of the pages (categories are read only here).

    Compliance@10 of a prompt is the mean over users of the share of the top 10 in the prompt's
    ``categories``. Negation removal of a prompt is ``1 - avoided share with the mood / avoided
    share without it`` over the top 20, summed over users whose no-mood page shows any.
    ``negation_only_others_lost`` is the false-removal side of negation-only prompts: the share
    of the no-mood top 20's clips of *other* categories missing from the mood page's top 20.
    """
    cat = dict(zip(categories["item_id"].to_list(), categories["category"].to_list(), strict=True))
    per_user_split: dict[str, dict[int, list[float]]] = {s: {} for s in SPLITS}
    pg = pages.with_columns(
        pl.col("item_id").replace_strict(cat, default=None, return_dtype=pl.String).alias("cat")
    )
    base = pg.filter(pl.col("prompt") == "")
    per_prompt: dict[str, dict[str, Any]] = {}
    served = set(pg["prompt"].unique().to_list())
    prompts = [spec for spec in prompts if spec.prompt in served]  # one split per run
    for spec in prompts:
        p = pg.filter(pl.col("prompt") == spec.prompt)
        row: dict[str, Any] = {"split": spec.split}
        if spec.categories:
            top = p.filter(pl.col("rank") <= 10)
            per_user = top.group_by("user_id", maintain_order=True).agg(
                pl.col("cat").is_in(spec.categories).mean().alias("c")
            )
            shares = per_user["c"].cast(pl.Float64).to_numpy()
            row["compliance_at_10"] = round(float(shares.mean()) if len(shares) else 0.0, 4)
            for uid, c in zip(per_user["user_id"].to_list(), shares.tolist(), strict=True):
                per_user_split[spec.split].setdefault(int(uid), []).append(float(c))
        if spec.avoid:
            before = int(base.filter(pl.col("rank") <= 20)["cat"].is_in(spec.avoid).sum())
            after = int(p.filter(pl.col("rank") <= 20)["cat"].is_in(spec.avoid).sum())
            row["avoided_before"] = int(before)
            row["avoided_after"] = int(after)
            row["negation_removed"] = round(1.0 - after / before, 4) if before else None
            # False removals: clips of other kinds on the no-mood page that the mood page
            # lost (a negation-only mood lifts nothing, so only removal takes them off).
            other = base.filter((pl.col("rank") <= 20) & ~pl.col("cat").is_in(spec.avoid))
            shown = p.filter(pl.col("rank") <= 20).select("user_id", "item_id")
            lost = other.join(shown, on=["user_id", "item_id"], how="anti").height
            row["others_before"] = other.height
            row["others_lost"] = lost
        per_prompt[spec.prompt] = row

    def mean_of(key: str, split: str) -> float | None:
        vals = [
            r[key] for r in per_prompt.values() if r["split"] == split and r.get(key) is not None
        ]
        return round(float(np.mean(vals)), 4) if vals else None

    def pooled_removal(split: str) -> float | None:
        rows = [r for r in per_prompt.values() if r["split"] == split and "avoided_before" in r]
        before = sum(r["avoided_before"] for r in rows)
        after = sum(r["avoided_after"] for r in rows)
        return round(1.0 - after / before, 4) if before else None

    def others_lost(split: str) -> float | None:
        rows = [
            r
            for spec, r in ((spec, per_prompt[spec.prompt]) for spec in prompts)
            if spec.split == split and spec.avoid and not spec.categories
        ]
        before = sum(r["others_before"] for r in rows)
        return round(sum(r["others_lost"] for r in rows) / before, 4) if before else None

    negation_only = {
        s: {
            spec.prompt: per_prompt[spec.prompt].get("negation_removed")
            for spec in prompts
            if spec.split == s and spec.avoid and not spec.categories
        }
        for s in SPLITS
    }
    return {
        "compliance_at_10": {s: mean_of("compliance_at_10", s) for s in ("tune", "heldout")},
        "compliance_at_10_ci95": {
            s: user_mean_ci(per_user_split[s]) for s in SPLITS if per_user_split[s]
        },
        "negation_only_removed": {s: v for s, v in negation_only.items() if v},
        "negation_removed": {s: pooled_removal(s) for s in ("tune", "heldout")},
        "negation_removed_mean": {s: mean_of("negation_removed", s) for s in ("tune", "heldout")},
        "negation_only_others_lost": {s: others_lost(s) for s in ("tune", "heldout")},
        "per_prompt": per_prompt,
    }


def user_mean_ci(
    per_user: dict[int, list[float]], *, resamples: int = 2000, seed: int = 0
) -> dict[str, float | int]:
    """Mean over users of each user's mean compliance, with a 95% bootstrap interval over
    users (users are the unit that varies; prompts are fixed)."""
    values = np.asarray([float(np.mean(v)) for v in per_user.values()])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(resamples, len(values)))
    means = values[idx].mean(axis=1)
    return {
        "users": len(values),
        "mean": round(float(values.mean()), 4),
        "low": round(float(np.percentile(means, 2.5)), 4),
        "high": round(float(np.percentile(means, 97.5)), 4),
    }


def run_steering_eval(
    microlens_dir: Path,
    prompts_file: Path,
    out_file: Path,
    *,
    data_dir: Path,
    cfg: WorldConfig | None = None,
    split: Split = "tune",
    page_size: int = 20,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the benchmark on one split; write the pages to ``out_file`` and return the report.

    ``split="tune"`` serves the tuning prompts to the tuning users (choose settings on this);
    ``split="heldout"`` the held-out prompts to the held-out users (run once, at the end).
    The baseline's pages go next to it (``<out>.baseline.parquet``) and are scored alike.
    """
    cfg = cfg or WorldConfig()
    prompts = [p for p in load_prompts(prompts_file) if p.split == split]
    if not prompts:
        msg = f"{prompts_file} holds no {split} prompts"
        raise SteeringEvalError(msg)
    t0 = time.perf_counter()
    engine, all_users = open_world(microlens_dir, data_dir, cfg, progress=progress)
    users = split_users(all_users, cfg, split)
    try:
        pages, latency, no_mood = run_pages(
            engine, users, prompts, page_size=page_size, progress=progress
        )
        base = baseline_pages(engine, prompts, no_mood, page_size=page_size)
        hist = [
            len(set(np.asarray(engine.state.activity.history[u].rows).tolist()))
            for u in users
            if u in engine.state.activity.history
        ]
        n_clips = len(engine.state.catalogue.item_ids)
    finally:
        engine.close()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    pages.write_parquet(out_file)
    base_file = out_file.with_name(out_file.stem + ".baseline.parquet")
    base.write_parquet(base_file)
    report: dict[str, Any] = {
        "split": split,
        "clips": n_clips,
        "limit": cfg.limit_clips,
        "users": len(users),
        "min_history_clips": min(hist) if hist else 0,
        "prompts": len(prompts),
        "page_size": page_size,
        "out": str(out_file),
        "baseline_out": str(base_file),
        "latency": latency,
    }
    if any(p.categories or p.avoid for p in prompts):
        cats = load_microlens_categories(microlens_dir)
        report["scores"] = score_pages(pages, cats, prompts)
        report["baseline_scores"] = score_pages(base, cats, prompts)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    logger.info(
        "steering eval users=%d prompts=%d s=%.0f", len(users), len(prompts), report["seconds"]
    )
    return report


def rescore(microlens_dir: Path, prompts_file: Path, out_file: Path) -> dict[str, Any]:
    """Score pages written by an earlier run (``out_file`` and its baseline when present).

    Raises
    ------
    SteeringEvalError
        The pages file is missing or lacks the ``prompt, user_id, item_id, rank`` columns.
    """
    prompts = load_prompts(prompts_file)
    if not out_file.is_file():
        msg = f"pages file not found: {out_file}; run without --score first"
        raise SteeringEvalError(msg)
    cats = load_microlens_categories(microlens_dir)
    report: dict[str, Any] = {"out": str(out_file), "prompts": len(prompts)}
    base_file = out_file.with_name(out_file.stem + ".baseline.parquet")
    for key, path in (("scores", out_file), ("baseline_scores", base_file)):
        if not path.is_file():
            continue
        pages = pl.read_parquet(path)
        missing = {"prompt", "user_id", "item_id", "rank"} - set(pages.columns)
        if missing:
            msg = f"{path} lacks columns {sorted(missing)}"
            raise SteeringEvalError(msg)
        report[key] = score_pages(pages, cats, prompts)
    return report
