"""Benchmarks of the learned ranker (``pytest -m bench tests/bench/test_bench_learned.py``).

- training on 1M logged impressions (examples from the log JSON, split, heads + lambdarank,
  held-out evaluation): target <= 3 minutes on 2 cores;
- scoring 1,000 candidates with the learned value model: target adds <= 8 ms p99 to a page
  over the hand-weighted scorer. Measured for the serving default (the ranker on all 1,000,
  every head on the best 200) and for every head on every candidate; the explanation stage
  (pred_contrib on the 20 page rows) is measured separately.

The impressions are synthetic but shaped like the log: pages of ten, every registry feature
logged as JSON, actions drawn from a logistic model of the features. Numbers land in the
benchmark's ``extra_info`` (``--benchmark-json``) and in the log.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from features.registry import feature_names
from ranking.learned.training import TrainResult, TrainSettings, build_examples, train_and_evaluate

pytestmark = pytest.mark.bench
logger = logging.getLogger(__name__)

N_IMPRESSIONS = 1_000_000
PAGE = 10
T0 = datetime(2025, 6, 1)


def synthetic_log(n: int, *, seed: int = 0) -> pl.DataFrame:
    """``n`` logged impressions (pages of ten over 14 days) and the actions that followed."""
    rng = np.random.default_rng(seed)
    names = feature_names()
    feats = {name: rng.random(n) for name in names}
    feats["follows_author"] = (rng.random(n) < 0.2).astype(np.float64)
    feats["like_rate"] = rng.beta(2, 30, n)
    feats["skip_rate"] = rng.beta(3, 6, n)
    n_req = n // PAGE
    req = np.repeat(np.arange(n_req), PAGE)
    req_ts = T0 + pl.Series(np.sort(rng.integers(0, 14 * 86400, n_req)) * 1_000_000).cast(
        pl.Duration("us")
    )
    ts = pl.Series("ts", req_ts.to_numpy()[req]).cast(pl.Datetime("us"))
    user = rng.integers(0, 20_000, n_req)[req]
    item = rng.integers(0, 200_000, n)
    logit = (
        -2.0
        + 2.5 * feats["user_clip_cosine"]
        + 1.2 * feats["follows_author"]
        + 25.0 * feats["like_rate"]
        - 2.0 * feats["skip_rate"]
        + 0.8 * feats["user_author_affinity"]
    )
    p = 1.0 / (1.0 + np.exp(-logit))
    imp = pl.DataFrame(
        {
            "event_id": [f"i{k}" for k in range(n)],
            "user_id": user,
            "item_id": item,
            "event_type": "impression",
            "ts": ts,
            "request_id": pl.Series(req).cast(pl.String),
            "position": np.tile(np.arange(PAGE), n_req).astype(np.int32),
            "source": "following",
            "watch_frac": None,
        },
        schema_overrides={"watch_frac": pl.Float64},
    ).with_columns(
        pl.DataFrame(feats).select(pl.struct(names).struct.json_encode().alias("features"))
    )
    acts = []
    for et, scale in (
        ("view", 1.0),
        ("like", 0.25),
        ("share", 0.05),
        ("comment", 0.05),
        ("remix", 0.03),
        ("follow", 0.02),
    ):
        hit = rng.random(n) < p * scale
        acts.append(
            imp.filter(pl.Series(hit)).select(
                pl.col("event_id") + f"-{et}",
                "user_id",
                "item_id",
                pl.lit(et).alias("event_type"),
                pl.col("ts") + timedelta(seconds=20),
                pl.lit(None, pl.String).alias("request_id"),
                pl.lit(None, pl.Int32).alias("position"),
                pl.lit(None, pl.String).alias("source"),
                pl.lit(0.8 if et == "view" else None, pl.Float64).alias("watch_frac"),
                pl.lit(None, pl.String).alias("features"),
            )
        )
    skip = rng.random(n) < (1 - p) * 0.5
    acts.append(
        imp.filter(pl.Series(skip)).select(
            pl.col("event_id") + "-skip",
            "user_id",
            "item_id",
            pl.lit("skip").alias("event_type"),
            pl.col("ts") + timedelta(seconds=3),
            pl.lit(None, pl.String).alias("request_id"),
            pl.lit(None, pl.Int32).alias("position"),
            pl.lit(None, pl.String).alias("source"),
            pl.lit(None, pl.Float64).alias("watch_frac"),
            pl.lit(None, pl.String).alias("features"),
        )
    )
    return pl.concat([imp, *acts], how="vertical_relaxed")


@pytest.fixture(scope="module")
def log_1m() -> pl.DataFrame:
    return synthetic_log(N_IMPRESSIONS)


@pytest.fixture(scope="module")
def trained_1m() -> dict[str, object]:
    """Holds the model the training benchmark produced, for the scoring benchmark."""
    return {}


def test_bench_training_on_1m_logged_impressions(
    benchmark: pytest.FixtureRequest, log_1m: pl.DataFrame, trained_1m: dict[str, object]
) -> None:
    settings = TrainSettings(since_days=None, num_threads=2)

    def train() -> TrainResult:
        t0 = time.perf_counter()
        ex = build_examples(log_1m, label_window_h=settings.label_window_h)
        t_ex = time.perf_counter() - t0
        res = train_and_evaluate(ex, settings=settings)
        res.timings["examples_s"] = t_ex
        return res

    res: TrainResult = benchmark.pedantic(train, rounds=1, iterations=1)  # type: ignore[attr-defined]
    total = res.seconds + res.timings["examples_s"]
    benchmark.extra_info.update(  # type: ignore[attr-defined]
        {
            "impressions": N_IMPRESSIONS,
            "seconds_total": round(total, 1),
            **{k: round(v, 1) for k, v in res.timings.items()},
            "ndcg@10": res.metrics.get("ndcg@10"),
            "hand_weighted_ndcg@10": res.metrics.get("hand_weighted_ndcg@10"),
            "trees": _trees(res),
            "load_average_1m": round(os.getloadavg()[0], 1),
        }
    )
    logger.warning("bench train 1M: %s", benchmark.extra_info)  # type: ignore[attr-defined]
    trained_1m["result"] = res
    assert res.n_train + res.n_holdout == N_IMPRESSIONS


def _trees(res: TrainResult) -> dict[str, int]:
    out = {h: b.num_trees() for h, b in res.model.heads.items() if not isinstance(b, float)}
    if res.model.ranker is not None:
        out["ranker"] = res.model.ranker.num_trees()
    return out


def _p(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1e3, q))


def test_bench_scoring_1000_candidates(
    benchmark: pytest.FixtureRequest,
    log_1m: pl.DataFrame,
    trained_1m: dict[str, object],
    tmp_path: Path,
) -> None:
    from ranking.learned.registry import ModelRegistry
    from ranking.learned.serving import LearnedModels, LearnedServingSettings
    from ranking.overrides import RequestOverrides
    from ranking.pipeline import FeedQuery
    from ranking.post_hydrators.learned_explanations import LearnedExplanationsPostHydrator
    from ranking.scorers.hand_weighted import HandWeightedScorer
    from ranking.scorers.lightgbm_scorer import LightGbmScorer

    res = trained_1m.get("result")
    if not isinstance(res, TrainResult):  # run alone: train on 200k impressions
        ex = build_examples(synthetic_log(200_000, seed=1))
        res = train_and_evaluate(ex, settings=TrainSettings(since_days=None))
    reg = ModelRegistry(tmp_path / "models")
    version = reg.save(
        res.model, metrics=res.metrics, holdout_start=res.cutoff, n_train=res.n_train
    )
    models = LearnedModels(reg, settings=LearnedServingSettings())
    scorer = LightGbmScorer(models)  # light then heavy (every head on the best 200)
    exact = LightGbmScorer(models, heavy_top_k=None)  # every head on every candidate
    hand = HandWeightedScorer()
    explain = LearnedExplanationsPostHydrator(models)
    cands = res.holdout.frame.head(1000)
    assert cands.height == 1000

    def query() -> FeedQuery:
        return FeedQuery(
            user_id=1,
            limit=20,
            now=datetime.now(UTC),
            session_id="bench",
            overrides=RequestOverrides(ranker_model=version),
        )

    q = query()
    scorer.score(q, cands)  # load the model once (as the first request would)
    # Wall time (what a page waits) and this thread's CPU time (the work itself: on a machine
    # shared with other jobs, wall time also counts the time spent waiting for a core).
    learned_t, hand_t, explain_t = [], [], []
    learned_c, hand_c, explain_c = [], [], []
    exact_t, exact_c = [], []
    for _ in range(300):
        q = query()
        t, c = time.perf_counter(), time.thread_time()
        scores = scorer.score(q, cands)
        learned_t.append(time.perf_counter() - t)
        learned_c.append(time.thread_time() - c)
        t, c = time.perf_counter(), time.thread_time()
        exact.score(q, cands)
        exact_t.append(time.perf_counter() - t)
        exact_c.append(time.thread_time() - c)
        t, c = time.perf_counter(), time.thread_time()
        hand.score(q, cands)
        hand_t.append(time.perf_counter() - t)
        hand_c.append(time.thread_time() - c)
        page = cands.with_columns(pl.Series("score_learned_value", scores)).head(20)
        t, c = time.perf_counter(), time.thread_time()
        explain.hydrate(q, page)
        explain_t.append(time.perf_counter() - t)
        explain_c.append(time.thread_time() - c)
    benchmark.pedantic(lambda: scorer.score(query(), cands), rounds=50, iterations=1)  # type: ignore[attr-defined]
    info = {
        "candidates": 1000,
        "learned_p50_ms": round(_p(learned_t, 50), 2),
        "learned_p99_ms": round(_p(learned_t, 99), 2),
        "hand_weighted_p50_ms": round(_p(hand_t, 50), 2),
        "hand_weighted_p99_ms": round(_p(hand_t, 99), 2),
        "added_p99_ms": round(_p(learned_t, 99) - _p(hand_t, 99), 2),
        "explain_20_rows_p50_ms": round(_p(explain_t, 50), 2),
        "explain_20_rows_p99_ms": round(_p(explain_t, 99), 2),
        "cpu_learned_p50_ms": round(_p(learned_c, 50), 2),
        "cpu_learned_p99_ms": round(_p(learned_c, 99), 2),
        "cpu_hand_weighted_p99_ms": round(_p(hand_c, 99), 2),
        "exact_all_heads_p50_ms": round(_p(exact_t, 50), 2),
        "exact_all_heads_p99_ms": round(_p(exact_t, 99), 2),
        "cpu_exact_all_heads_p50_ms": round(_p(exact_c, 50), 2),
        "cpu_exact_all_heads_p99_ms": round(_p(exact_c, 99), 2),
        "cpu_added_p99_ms": round(_p(learned_c, 99) - _p(hand_c, 99), 2),
        "cpu_explain_20_rows_p99_ms": round(_p(explain_c, 99), 2),
        "trees": res.model.meta.get("trees") or _trees(res),
        "load_average_1m": round(os.getloadavg()[0], 1),
    }
    benchmark.extra_info.update(info)  # type: ignore[attr-defined]
    logger.warning("bench scoring 1000 candidates: %s", info)
