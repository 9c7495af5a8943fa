"""Evaluate the wellbeing loop on the demo world: surveys -> satisfaction model -> ranking.

:func:`evaluate_on_demo_world` builds a demo world into a data directory (no caption
embeddings: the comparison is about the value model, not retrieval), simulates survey answers
from the world's ground truth (:mod:`pipelines.offline.wellbeing_simulate`), runs the
``satisfaction`` job, then serves one page per sampled user with the satisfaction head at each
weight and scores the pages against the ground truth:

- **engagement**: mean true affinity of the page's clips and the expected watch fraction the
  demo world draws views from;
- **satisfaction**: the ground-truth satisfaction of a two-minute daytime session made of the
  page (:func:`pipelines.offline.wellbeing_simulate.true_satisfaction`);
- the mean intensity of the page.

Pages are served by the real home pipeline as dry runs (no impression logged, no page
counted) with survey drawing left out, so every arm sees the same state.
Differences are paired per user (mean and 95% interval).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipelines.offline.demo import load_world
from pipelines.offline.demo_world import World, WorldConfig, build_world
from pipelines.offline.wellbeing_simulate import simulate_surveys, true_satisfaction
from pipelines.serving.engine import Engine, open_engine
from pipelines.serving.products.home import HOME
from ranking.overrides import RequestOverrides
from ranking.pipeline import FeedQuery, RankingPipeline
from storage.store import Store
from wellbeing.propensity import ipw_mean
from wellbeing.query_hydrators.survey_card import SurveyCardQueryHydrator
from wellbeing.report import EVALUATION_FILE

logger = logging.getLogger(__name__)

EVAL_FILE = EVALUATION_FILE  # where the report looks for it


def _eval_pipeline(engine: Engine) -> RankingPipeline:
    """The declared home feed without its survey card hydrator (drawing a card writes it)."""
    home = engine.products[HOME]
    return dataclasses.replace(
        home,
        query_hydrators=[
            q for q in home.query_hydrators if not isinstance(q, SurveyCardQueryHydrator)
        ],
    )


def _page_metrics(world: World, user_id: int, items: list[int], is_teen: bool) -> dict[str, float]:
    ids = np.asarray(items, dtype=np.int64)
    aff = world.true_affinity(np.full(len(ids), user_id), ids)
    inten = world.clip_intensity[world.item_index(ids)]
    watch = np.clip(0.08 + 0.85 * aff**1.6, 0.03, 0.97)
    sat = true_satisfaction(
        np.array([aff.mean()]),
        np.array([inten.mean()]),
        is_teen=np.array([1.0 if is_teen else 0.0]),
        minutes=np.array([2.0]),
        late_night=np.array([0.0]),
    )
    return {
        "affinity": float(aff.mean()),
        "watch_frac": float(watch.mean()),
        "satisfaction": float(sat[0]),
        "intensity": float(inten.mean()),
    }


def compare_heads(
    engine: Engine,
    world: World,
    *,
    weights: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0),
    n_users: int = 200,
    limit: int = 10,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Serve one page per sampled user at each satisfaction weight; score against the truth."""
    from rich.progress import track

    pipeline = _eval_pipeline(engine)
    rng = np.random.default_rng(seed)
    users = sorted(
        u for u in engine.state.activity.history if len(engine.state.activity.history[u].rows) >= 3
    )
    picked = rng.choice(users, size=min(n_users, len(users)), replace=False).tolist()
    now = world.config.end + timedelta(hours=1)
    per_arm: dict[float, list[dict[str, float]]] = {w: [] for w in weights}
    for uid in track(picked, description="pages per arm", disable=not progress):
        teen = bool((engine.state.profiles.by_user.get(uid) or {}).get("is_teen"))
        for w in weights:
            q = FeedQuery(
                user_id=int(uid),
                limit=limit,
                now=now,
                session_id=f"eval-{uid}",
                overrides=RequestOverrides(satisfaction_weight=w),
            )
            page = pipeline.run(q, dry_run=True).page
            items = page["item_id"].to_list()
            if not items:
                continue
            per_arm[w].append({"user_id": uid, **_page_metrics(world, int(uid), items, teen)})
    base = pl.DataFrame(per_arm[weights[0]])
    arms: list[dict[str, Any]] = []
    for w in weights:
        df = pl.DataFrame(per_arm[w])
        row: dict[str, Any] = {"weight": w, "pages": df.height}
        joined = df.join(base, on="user_id", suffix="_base")
        for m in ("affinity", "watch_frac", "satisfaction", "intensity"):
            row[m] = round(float(df[m].mean()), 4)  # type: ignore[arg-type]
            diff = (joined[m] - joined[f"{m}_base"]).to_numpy()
            se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
            row[f"{m}_diff"] = round(float(diff.mean()), 4)
            row[f"{m}_diff_ci95"] = round(1.96 * se, 4)
        arms.append(row)
    return {"users": len(picked), "limit": limit, "arms": arms}


def evaluate_on_demo_world(
    data_dir: Path,
    *,
    config: WorldConfig | None = None,
    weights: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0),
    n_users: int = 200,
    progress: bool = False,
) -> dict[str, Any]:
    """Build the world, simulate surveys, train, compare heads; write ``wellbeing_eval.json``.

    Returns the report (also written to ``data_dir / EVAL_FILE``).
    """
    from pipelines.serving.jobs import JobContext, run_job

    t0 = time.perf_counter()
    cfg = config or WorldConfig(n_users=1000, n_clips=8000, n_events=200_000, seed=0)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("steerfeed.duckdb", "steerfeed.duckdb.wal"):
        (data_dir / stale).unlink(missing_ok=True)
    world = build_world(cfg, progress=progress)
    store = Store(data_dir / "steerfeed.duckdb")
    load_world(store, world)
    store.checkpoint()
    store.close()
    engine = open_engine(data_dir)
    try:
        sim = simulate_surveys(engine.store, world, seed=cfg.seed)
        job = run_job("satisfaction", JobContext(engine))
        if not job.ok:
            msg = f"satisfaction job failed: {job.message}"
            raise RuntimeError(msg)
        estimates = _estimates(engine)
        heads = compare_heads(
            engine, world, weights=weights, n_users=n_users, seed=cfg.seed, progress=progress
        )
    finally:
        engine.close()
    report = {
        "world": {
            "users": cfg.n_users,
            "clips": cfg.n_clips,
            "events": cfg.n_events,
            "seed": cfg.seed,
        },
        "simulation": sim.to_dict(),
        "satisfaction_job": job.counts,
        "estimates": estimates,
        "value_model_comparison": heads,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (data_dir / EVAL_FILE).write_text(json.dumps(report, indent=2, default=str))
    return report


def _estimates(engine: Engine) -> dict[str, Any]:
    """Mean in-the-moment answer: naive, inclusion-weighted and fully weighted."""
    df = engine.store.query(
        "SELECT answer, inclusion_probability, response_propensity FROM survey_prompts "
        "WHERE status = 'answered' AND kind = 'in_moment'"
    )
    if df.height == 0:
        return {}
    y = df["answer"].cast(pl.Float64).to_numpy()
    incl = df["inclusion_probability"].to_numpy()
    resp = df["response_propensity"].fill_null(1.0).to_numpy()
    return {
        "answers": df.height,
        "naive_mean": round(float(y.mean()), 4),
        "inclusion_weighted_mean": round(ipw_mean(y, incl), 4),
        "propensity_weighted_mean": round(ipw_mean(y, np.clip(incl * resp, 1e-6, 1.0)), 4),
    }
