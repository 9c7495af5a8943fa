"""Jobs of the learned ranker: ``train`` (daily) and ``author_stats`` (every 15 minutes).

``steerfeed jobs run train``:

1. examples are the logged impressions of the last ``since_days`` joined to what the same user
   did with the same clip in the following ``label_window_h`` hours; their features are the
   JSON the impression side effect wrote when the page was served. Impressions logged without
   features (an imported log, the demo world) get them from a point-in-time replay of the log
   (:func:`ranking.learned.replay.replay_features`), never from today's values;
2. the heads and the lambdarank ranker are trained on the earlier requests; the latest
   ``holdout_frac`` of requests (a later time window) are held out;
3. the model is saved in the registry (``<data_dir>/models``) with its metrics and feature list;
4. the promotion gate compares it with the serving model (or the hand-weighted scorer) on the
   held-out window; it is promoted only when it wins, and the engine switches to it.

``steerfeed jobs run author_stats`` recomputes the author features (follower growth, engagement
rate, PageRank credibility) and hands them to the serving state.

A log with **no impressions at all** (an imported history: listens, past views) has nothing
logged to train on; then the fold rule applies instead
(:func:`ranking.learned.history_training.train_from_history`): the engagement read as the
``collab`` job reads it, mutual follows as friendships and the hashtags of the engaged clips as
tags train a fold-bagged lambdarank ranker whose retrievers are saved with it, and the gate
compares it on people kept out of training. Once such a model serves, its features are logged
with every impression, and the next training reads them as logged.

Options (``JobContext.options``): ``settings`` (a :class:`TrainSettings`), ``promote`` (bool,
default True), ``min_gain`` (float, default from :class:`TrainJobSettings`), ``progress``.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl

from features.author_stats import AUTHOR_STAT_COLUMNS, compute_author_stats, follow_edges
from features.registry import CANDIDATE_FEATURES, feature_names
from pipelines.serving.jobs.runner import JobContext
from pipelines.serving.settings import TrainJobSettings
from ranking.learned.heads import LABEL_EVENT_TYPES
from ranking.learned.history_training import HistoryTrainSettings, train_from_history
from ranking.learned.registry import HAND_WEIGHTED, ModelRegistry, PromotionRefused, promotion_gate
from ranking.learned.replay import ReplayTables, replay_features
from ranking.learned.services import models_dir
from ranking.learned.training import (
    Examples,
    TrainingError,
    TrainSettings,
    build_examples,
    load_examples,
    train_and_evaluate,
)
from ranking.retrieval.engagement import engagement_from_events
from ranking.state import to_epoch

if TYPE_CHECKING:
    from pipelines.serving.engine import Engine

logger = logging.getLogger(__name__)

CAPTION_SPACE = "caption"
CANDIDATE_NAMES = frozenset(f.name for f in CANDIDATE_FEATURES)


# -- examples from a store ------------------------------------------------------------------------
def _window_start(engine: Engine, settings: TrainSettings, now: datetime | None) -> datetime | None:
    if settings.since_days is None:
        return None
    end = now or engine.store.scalar("SELECT max(ts) FROM events") or datetime(1970, 1, 1)
    return end - timedelta(days=settings.since_days)


def replayed_events(engine: Engine, *, since: datetime | None = None) -> pl.DataFrame:
    """The event log with point-in-time features filled for impressions logged without them.

    The whole log is replayed (counters are cumulative); only impressions at or after ``since``
    are kept together with every action (labels are joined later).
    """
    st = engine.store
    events = st.query(
        "SELECT event_id, user_id, item_id, target_user_id, event_type, ts, session_id, "
        "request_id, position, source, features, watch_frac, watch_s, weight FROM events"
    )
    tables = ReplayTables(
        users=st.query("SELECT * FROM users"),
        clips=st.query("SELECT * FROM clips"),
        follows=st.query("SELECT * FROM follows"),
        blocks=st.query("SELECT * FROM blocks"),
        events=events,
        vectors=st.get_vectors(CAPTION_SPACE),
    )
    out = replay_features(tables)
    if since is not None:
        out = out.filter(pl.col("ts") >= since)
    return out


def examples_from_store(
    engine: Engine,
    settings: TrainSettings,
    *,
    replay_missing: bool = True,
    now: datetime | None = None,
) -> tuple[Examples, int]:
    """Training examples from the engine's store; also returns how many impressions were replayed.

    Impressions that carry logged features are read as logged. When some lack them and
    ``replay_missing`` is set, the log is replayed point-in-time to fill them.
    """
    since = _window_start(engine, settings, now)
    where, params = "", []
    if since is not None:
        where, params = " AND ts >= ?", [since]
    missing = int(
        engine.store.scalar(
            "SELECT count(*) FROM events WHERE event_type = 'impression' "  # noqa: S608
            "AND request_id IS NOT NULL AND features IS NULL" + where,
            params,
        )
        or 0
    )
    names = trained_features(engine, since)
    if missing and replay_missing:
        events = replayed_events(engine, since=since)
        types = {"impression", *LABEL_EVENT_TYPES}
        events = events.filter(pl.col("event_type").is_in(list(types)))
        return build_examples(events, names=names, label_window_h=settings.label_window_h), missing
    return load_examples(engine.store, settings=settings, names=names, now=now), 0


def trained_features(engine: Engine, since: datetime | None) -> tuple[str, ...]:
    """The registry features a model of logged impressions trains on.

    The candidate features are left out unless some impression of the window logged them (a
    fold-rule model with retrievers served it): otherwise every row would hold their defaults,
    and the served model would only carry dead columns into every page's feature matrix.
    """
    where, params = "", []
    if since is not None:
        where, params = " AND ts >= ?", [since]
    logged = engine.store.scalar(
        "SELECT count(*) FROM events WHERE event_type = 'impression' "  # noqa: S608
        "AND features LIKE '%\"ease_score\"%'" + where,
        params,
    )
    if logged:
        return feature_names()
    return tuple(n for n in feature_names() if n not in CANDIDATE_NAMES)


def history_inputs(engine: Engine) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Engagement, friendships and tags of an impression-free history, from the store.

    Engagement is read as the ``collab`` job reads it; friendships are mutual follows (both
    directions); tags are the hashtags of each engaged clip, one row per (person, clip, tag),
    so a person's tag profile is that of what they engaged with.
    """
    st = engine.store
    interactions = engagement_from_events(st)
    follows = st.query("SELECT follower_id, followee_id FROM follows").select(
        pl.col("follower_id").cast(pl.Int64), pl.col("followee_id").cast(pl.Int64)
    )
    mutual = follows.join(
        follows.select(follower_id="followee_id", followee_id="follower_id"),
        on=["follower_id", "followee_id"],
        how="semi",
    )
    friendships = mutual.select(user_id="follower_id", friend_id="followee_id")
    hashtags = (
        st.query("SELECT item_id, hashtags FROM clips")
        .select(pl.col("item_id").cast(pl.Int64), "hashtags")
        .explode("hashtags")
        .drop_nulls("hashtags")
    )
    codes = hashtags.select(pl.col("hashtags").unique().sort()).with_row_index("tag_id")
    tags = (
        interactions.select("user_id", "item_id")
        .join(hashtags.join(codes, on="hashtags"), on="item_id")
        .select("user_id", "item_id", pl.col("tag_id").cast(pl.Int64))
    )
    return interactions, friendships, tags


def _gate_and_promote(
    engine: Engine,
    registry: ModelRegistry,
    version: str,
    model: Any,
    holdout: Any,
    *,
    min_gain: float,
    promote: bool,
) -> tuple[Any, bool]:
    """Judge a saved model against the serving one; promote it when it passes (and
    ``promote``), else record the verdict. Return the gate and whether it now serves."""
    gate = promotion_gate(model, engine.learned.serving(), holdout, min_gain=min_gain)
    engine.telemetry.gate_verdict(gate.passed)
    if not promote:
        registry.update_meta(version, gate=gate.as_dict())
        return gate, False
    try:
        registry.promote(version, gate)
    except PromotionRefused as exc:
        logger.info("%s", exc)
        return gate, False
    return gate, True


def train_history_and_register(
    engine: Engine,
    *,
    settings: HistoryTrainSettings | None = None,
    job: TrainJobSettings | None = None,
    promote: bool = True,
) -> dict[str, Any]:
    """Train by the fold rule on the store's engagement, save it and promote it if it wins."""
    s = settings if settings is not None else engine.settings.train_history
    j = job if job is not None else engine.settings.train_job
    t0 = time.perf_counter()
    interactions, friendships, tags = history_inputs(engine)
    if interactions.height == 0:
        msg = "no impressions and no engagement to train on"
        raise TrainingError(msg)
    t_inputs = time.perf_counter() - t0
    result = train_from_history(interactions, friendships=friendships, tags=tags, settings=s)
    registry = ModelRegistry(models_dir(engine.data_dir))
    metrics = dict(result.metrics)
    version = registry.save(
        result.model,
        metrics=metrics,
        holdout_start=None,
        n_train=result.n_train,
        extra={"rule": "history_folds", "train_history_settings": s.model_dump()},
    )
    gate, promoted = _gate_and_promote(
        engine,
        registry,
        version,
        result.model,
        result.holdout,
        min_gain=j.min_gain,
        promote=promote,
    )
    if promoted:
        engine.learned.invalidate()
    return {
        "version": version,
        "rule": "history_folds",
        "promoted": promoted,
        "serving": registry.serving_version() or HAND_WEIGHTED,
        "gate": gate.message(),
        "n_interactions": interactions.height,
        "n_train": result.n_train,
        "metrics": metrics,
        "seconds": {
            "inputs": round(t_inputs, 2),
            "fit": round(result.seconds, 2),
            "total": round(time.perf_counter() - t0, 2),
        },
    }


# -- jobs ---------------------------------------------------------------------------------------
def refresh_author_stats(engine: Engine, *, now: datetime | None = None) -> int:
    """Recompute the author statistics from the store and hand them to the serving state."""
    st = engine.store
    now = now or datetime.now(UTC).replace(tzinfo=None)
    events = st.query(
        "SELECT user_id, item_id, target_user_id, event_type, ts, watch_frac FROM events "
        "WHERE event_type IN ('impression', 'view', 'like', 'comment', 'share', 'remix', "
        "'follow') AND ts <= ?",
        [now],
    )
    edges = follow_edges(st.query("SELECT * FROM follows"), events)
    stats = compute_author_stats(
        edges, events, st.query("SELECT item_id, author_id FROM clips"), now=now
    )
    engine.state.engagement.set_author_stats(
        stats["author_id"].to_numpy(),
        {c: stats[c].to_numpy() for c in AUTHOR_STAT_COLUMNS},
        computed_at=to_epoch(now),
    )
    return stats.height


def run_author_stats(ctx: JobContext) -> dict[str, Any]:
    """Recompute the author features of the learned ranker.

    It also re-reads the model registry, so a model promoted from the CLI while the server runs
    with the hand-weighted scorer starts serving within one period.
    """
    n = refresh_author_stats(ctx.engine)
    ctx.engine.learned.invalidate()
    return {"authors": n, "serving": ctx.engine.learned.serving_version() or HAND_WEIGHTED}


def train_and_register(
    engine: Engine,
    *,
    settings: TrainSettings | None = None,
    job: TrainJobSettings | None = None,
    promote: bool = True,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Train a value model from the engine's log, save it, and promote it if it wins.

    A log without impressions is trained by the fold rule instead
    (:func:`train_history_and_register`).

    Returns
    -------
    dict
        Counts, timings, the metrics on the held-out window, the gate and the new version.
    """
    s = settings if settings is not None else engine.settings.train
    j = job if job is not None else engine.settings.train_job
    impressions = engine.store.scalar(
        "SELECT count(*) FROM events WHERE event_type = 'impression' AND request_id IS NOT NULL"
    )
    if not impressions:
        return train_history_and_register(engine, job=j, promote=promote)
    t0 = time.perf_counter()
    examples, replayed = examples_from_store(engine, s, replay_missing=j.replay_missing, now=now)
    t_examples = time.perf_counter() - t0
    result = train_and_evaluate(examples, settings=s)
    registry = ModelRegistry(models_dir(engine.data_dir))
    metrics = {k: v for k, v in result.metrics.items()}
    version = registry.save(
        result.model,
        metrics=metrics,
        holdout_start=result.cutoff,
        n_train=result.n_train,
        extra={
            "n_holdout": result.n_holdout,
            "train_settings": s.model_dump(),
            "replayed_impressions": replayed,
        },
    )
    gate, promoted = _gate_and_promote(
        engine,
        registry,
        version,
        result.model,
        result.holdout,
        min_gain=j.min_gain,
        promote=promote,
    )
    if promoted:
        if engine.state.engagement.author_stats_computed_at() is None:
            refresh_author_stats(engine)
        engine.learned.invalidate()
    return {
        "version": version,
        "promoted": promoted,
        "serving": registry.serving_version() or HAND_WEIGHTED,
        "gate": gate.message(),
        "n_examples": examples.n,
        "n_train": result.n_train,
        "n_holdout": result.n_holdout,
        "replayed_impressions": replayed,
        "holdout_start": result.cutoff.isoformat(),
        "metrics": metrics,
        "seconds": {
            "examples": round(t_examples, 2),
            **{k: round(v, 2) for k, v in result.timings.items()},
            "total": round(time.perf_counter() - t0, 2),
        },
    }


def run_train(ctx: JobContext) -> dict[str, Any]:
    """Train, register and (if it beats the serving model on a later window) promote."""
    opts = ctx.options
    settings = opts.get("settings")
    if settings is not None and not isinstance(settings, TrainSettings):
        msg = f"option 'settings' must be a TrainSettings, got {type(settings).__name__}"
        raise TrainingError(msg)
    job = ctx.engine.settings.train_job
    if "min_gain" in opts:
        job = TrainJobSettings.model_validate({**job.model_dump(), "min_gain": opts["min_gain"]})
    return train_and_register(
        ctx.engine, settings=settings, job=job, promote=bool(opts.get("promote", True))
    )
