"""Learned ranker vs the hand-weighted scorer on the demo world, where the truth is known.

The demo world (:mod:`pipelines.offline.demo_world`) draws every engagement from a ground-truth
affinity of each user for each clip. This evaluation:

1. builds a world and (optionally) embeds its captions with the real sentence-transformers
   model, so ``user_clip_cosine`` is served as in production;
2. replays the log point-in-time (:func:`ranking.learned.replay.replay_features`) to get the
   features a deployed feed would have logged at each impression;
3. trains the value model on every request before the last ``holdout_days`` days;
4. on the held-out days, re-ranks each user's impressions of a day with the learned value and
   with the hand-weighted scorer, and reports NDCG@10 against the **true affinity** (linear
   gain, per user-day) and against the **logged engagement** (graded relevance, per request).

Nothing of the held-out days is seen by training; features are those of the impression time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from pipelines.offline.demo_world import World, WorldConfig, build_world
from ranking.learned.replay import ReplayTables, replay_features
from ranking.learned.training import (
    NDCG_K,
    Examples,
    TrainSettings,
    build_examples,
    hand_weighted_scores,
    ndcg_at_k,
    train_value_model,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoEvalConfig:
    """Size of the world and of the held-out window."""

    n_users: int = 600
    n_clips: int = 5000
    n_events: int = 150_000
    days: int = 14
    holdout_days: float = 3.0
    seed: int = 0
    embed: bool = True


def _caption_vectors(world: World) -> tuple[np.ndarray, np.ndarray]:
    from features.embedding import shared_embedder

    captions = world.clips["caption"].to_list()
    uniq = list(dict.fromkeys(captions))
    emb = shared_embedder().embed(uniq)
    pos = {c: i for i, c in enumerate(uniq)}
    return world.clips["item_id"].to_numpy().astype(np.int64), emb[[pos[c] for c in captions]]


def evaluate_on_world(
    world: World,
    *,
    holdout_days: float = 3.0,
    embed: bool = True,
    settings: TrainSettings | None = None,
) -> dict[str, Any]:
    """Train on the world's earlier days and compare rankers on its last ``holdout_days``.

    Returns
    -------
    dict
        NDCG@10 against the true affinity and against the logged engagement for the learned
        value model, the hand-weighted scorer and a random order, with sizes and timings.
    """
    s = settings or TrainSettings(since_days=None)
    t0 = time.perf_counter()
    vectors = _caption_vectors(world) if embed else None
    t_embed = time.perf_counter() - t0
    replayed = replay_features(
        ReplayTables(world.users, world.clips, world.follows, world.blocks, world.events, vectors)
    )
    t_replay = time.perf_counter() - t0 - t_embed
    examples = build_examples(replayed, label_window_h=s.label_window_h)
    end: datetime = examples.frame["req_ts"].max()  # type: ignore[assignment]
    cutoff = end - timedelta(days=holdout_days)
    later = pl.col("req_ts") >= cutoff
    train, held = examples.subset(~later), examples.subset(later)
    if train.n == 0 or held.n == 0:
        msg = f"empty split: {train.n} train and {held.n} held-out impressions"
        raise ValueError(msg)
    t1 = time.perf_counter()
    model = train_value_model(train, settings=s)
    t_fit = time.perf_counter() - t1
    result = compare_on_holdout(world, model.score_frame(held.frame), held)
    result.update(
        {
            "world": {
                "users": world.users.height,
                "clips": world.clips.height,
                "events": world.events.height,
                "days": world.config.days,
                "seed": world.config.seed,
            },
            "holdout_days": holdout_days,
            "holdout_start": cutoff.isoformat(),
            "n_train_impressions": train.n,
            "n_holdout_impressions": held.n,
            "caption_vectors": embed,
            "seconds": {
                "embed": round(t_embed, 1),
                "replay": round(t_replay, 1),
                "fit": round(t_fit, 1),
                "total": round(time.perf_counter() - t0, 1),
            },
        }
    )
    return result


def compare_on_holdout(world: World, learned: np.ndarray, held: Examples) -> dict[str, Any]:
    """NDCG@10 of learned, hand-weighted and random scores on held-out examples."""
    f = held.frame
    truth = world.true_affinity(f["user_id"].to_numpy(), f["item_id"].to_numpy())
    sessions = (
        f.select(pl.concat_str([pl.col("user_id").cast(pl.String), pl.col("req_ts").dt.date()]))
        .to_series()
        .cast(pl.String)
    )
    rng = np.random.default_rng(0)
    scorers = {
        "learned": learned,
        "hand_weighted": hand_weighted_scores(f),
        "random": rng.random(f.height),
    }
    out: dict[str, Any] = {"k": NDCG_K, "true_affinity": {}, "engagement": {}}
    for name, sc in scorers.items():
        out["true_affinity"][name], n_sess = ndcg_at_k(sessions, sc, truth, gain="linear")
        out["engagement"][name], n_req = ndcg_at_k(f["request_id"], sc, f["relevance"].to_numpy())
    out["n_user_days"] = n_sess
    out["n_requests_with_engagement"] = n_req
    return out


def run_demo_eval(cfg: DemoEvalConfig | None = None) -> dict[str, Any]:
    """Build a demo world from ``cfg`` and run :func:`evaluate_on_world` on it."""
    c = cfg or DemoEvalConfig()
    world = build_world(
        WorldConfig(
            n_users=c.n_users, n_clips=c.n_clips, n_events=c.n_events, days=c.days, seed=c.seed
        )
    )
    return evaluate_on_world(world, holdout_days=c.holdout_days, embed=c.embed)
