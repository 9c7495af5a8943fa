"""Training the learned value model from the impression log.

Examples are logged impressions; their features are the JSON the impression side effect wrote
when the page was served (:func:`features.registry.decode_logged`), never values recomputed
later. Labels come from the events of the same user and clip that followed the impression within
``label_window_h`` hours (each action is credited to the latest earlier impression of that clip
to that user).

The split is by time: the last ``holdout_frac`` of requests (by request time) are held out and
never seen by training; the last ``valid_frac`` of the remaining requests drive early stopping.
On the held-out window the report gives NDCG@10 of the value model per request (graded relevance
of the engagement that followed, see :func:`ranking.learned.heads.relevance_expr`), the same for
the hand-weighted scorer, and the AUC of every head.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from scipy.stats import rankdata

from features.registry import decode_logged, feature_names, validate_names
from ranking.learned.heads import HEAD_NAMES, LABEL_EVENT_TYPES, event_flag_exprs, relevance_expr
from ranking.learned.value_model import LearnedValueModel, ValueWeights, fit_explainer
from ranking.pipeline import FeedQuery
from ranking.scorers.hand_weighted import HandWeightedScorer

logger = logging.getLogger(__name__)

NDCG_K = 10
_RANKER = "__ranker__"


class TrainingError(Exception):
    """Training cannot run (no impressions, no labels, a bad split)."""


class TrainSettings(BaseSettings):
    """How the value model is trained (env prefix ``STEERFEED_TRAIN_``)."""

    model_config = SettingsConfigDict(env_prefix="STEERFEED_TRAIN_", extra="forbid")

    label_window_h: float = Field(default=24.0, gt=0)
    since_days: float | None = Field(default=28.0, gt=0)
    holdout_frac: float = Field(default=0.2, gt=0, lt=0.9)
    valid_frac: float = Field(default=0.1, gt=0, lt=0.5)
    num_rounds: int = Field(default=200, ge=1)
    early_stopping_rounds: int = Field(default=20, ge=1)
    learning_rate: float = Field(default=0.1, gt=0)
    # Small trees: serving evaluates every head on ~1,000 candidates per page and TreeSHAP
    # explanations cost O(leaves x depth^2) per tree; 15 leaves at depth <= 6 ranked as well as
    # 31 unbounded leaves on 200k logged impressions (NDCG@10 0.7695 vs 0.7687) at half the
    # serving cost and a fifth of the explanation cost.
    num_leaves: int = Field(default=15, ge=2)
    max_depth: int = Field(default=6, ge=-1)
    min_data_in_leaf: int = Field(default=50, ge=1)
    max_bin: int = Field(default=63, ge=4)
    num_threads: int = Field(default=2, ge=1)
    min_positives: int = Field(default=10, ge=1)
    max_train_rows: int = Field(default=2_000_000, ge=1000)
    # Distil the value into one small booster that explains a page in one TreeSHAP pass
    # (value_model.fit_explainer); rows it is fitted on (a random sample of the fit part).
    explainer: bool = True
    explainer_rows: int = Field(default=100_000, ge=100)
    seed: int = 0


@dataclass
class Examples:
    """Impressions with their logged features and the labels that followed.

    ``frame`` has ``request_id``, ``user_id``, ``item_id``, ``ts``, ``req_ts``, ``position``,
    ``source``, one Float64 column per feature, one Int8 column per head and ``relevance``;
    it is sorted by request time, request and position, so requests are contiguous.
    """

    frame: pl.DataFrame
    feature_names: tuple[str, ...]

    @property
    def n(self) -> int:
        """Number of impressions."""
        return self.frame.height

    def matrix(self) -> np.ndarray:
        """The float64 feature matrix."""
        return self.frame.select(self.feature_names).to_numpy().astype(np.float64, copy=False)

    def group_sizes(self) -> np.ndarray:
        """Rows per request, in frame order (for lambdarank)."""
        rid = self.frame["request_id"]
        return rid.rle().struct.field("len").to_numpy()

    def subset(self, mask: pl.Expr | pl.Series) -> Examples:
        """The examples where ``mask`` holds."""
        return Examples(self.frame.filter(mask), self.feature_names)


@dataclass
class TrainResult:
    """A trained model and how it did on the held-out later window."""

    model: LearnedValueModel
    metrics: dict[str, float | None]
    n_train: int
    n_holdout: int
    cutoff: datetime
    seconds: float
    holdout: Examples
    timings: dict[str, float] = field(default_factory=dict)


# -- examples ---------------------------------------------------------------------------------
def build_examples(
    events: pl.DataFrame,
    *,
    names: Sequence[str] | None = None,
    label_window_h: float = 24.0,
) -> Examples:
    """Examples from an event log frame (the columns of the ``events`` table).

    Parameters
    ----------
    events
        Impressions (``event_type == 'impression'`` with ``request_id`` and ``features``) and
        the actions that may follow them.
    names
        Features to read from the logged JSON (default: every registry feature).
    label_window_h
        Hours after an impression in which an action counts as its outcome.
    """
    imp = events.filter((pl.col("event_type") == "impression") & pl.col("request_id").is_not_null())
    actions = events.filter(
        pl.col("event_type").is_in(list(LABEL_EVENT_TYPES)) & pl.col("item_id").is_not_null()
    )
    return examples_from(imp, actions, names=names, label_window_h=label_window_h)


def examples_from(
    impressions: pl.DataFrame,
    actions: pl.DataFrame,
    *,
    names: Sequence[str] | None = None,
    label_window_h: float = 24.0,
) -> Examples:
    """Examples from impression rows and action rows (see :func:`build_examples`)."""
    cols = validate_names(names if names is not None else feature_names())
    if impressions.height == 0:
        msg = "no logged impressions to train on"
        raise TrainingError(msg)
    imp = impressions.select(
        pl.col("request_id").cast(pl.String),
        pl.col("user_id").cast(pl.Int64),
        pl.col("item_id").cast(pl.Int64),
        pl.col("ts").cast(pl.Datetime("us")),
        pl.col("position").cast(pl.Int32).fill_null(0),
        (pl.col("source") if "source" in impressions.columns else pl.lit(None))
        .cast(pl.String)
        .alias("source"),
        pl.col("features").cast(pl.String),
    ).with_row_index("imp_idx")
    feats = decode_logged(imp["features"], cols)
    imp = pl.concat([imp.drop("features"), feats], how="horizontal")

    acts = actions.select(
        pl.col("user_id").cast(pl.Int64),
        pl.col("item_id").cast(pl.Int64),
        pl.col("ts").cast(pl.Datetime("us")).alias("act_ts"),
        *event_flag_exprs(),
    ).sort("act_ts")
    keys = imp.select("imp_idx", "user_id", "item_id", pl.col("ts").alias("act_ts")).sort("act_ts")
    credited = acts.join_asof(
        keys,
        on="act_ts",
        by=["user_id", "item_id"],
        strategy="backward",
        tolerance=timedelta(hours=label_window_h),
        check_sortedness=False,
    ).filter(pl.col("imp_idx").is_not_null())
    labels = credited.group_by("imp_idx").agg(pl.col(h).max() for h in HEAD_NAMES)
    frame = (
        imp.join(labels, on="imp_idx", how="left")
        .with_columns(pl.col(h).fill_null(0).cast(pl.Int8) for h in HEAD_NAMES)
        .with_columns(relevance_expr(), pl.col("ts").min().over("request_id").alias("req_ts"))
        .sort("req_ts", "request_id", "position", "imp_idx")
        .drop("imp_idx")
    )
    return Examples(frame, cols)


def load_examples(
    store: Any,
    *,
    settings: TrainSettings | None = None,
    names: Sequence[str] | None = None,
    now: datetime | None = None,
) -> Examples:
    """Examples from a :class:`storage.store.Store` (the last ``since_days`` of the log)."""
    s = settings or TrainSettings()
    where, params = "", []
    if s.since_days is not None:
        end = now or store.scalar("SELECT max(ts) FROM events") or datetime(1970, 1, 1)
        where, params = " AND ts >= ?", [end - timedelta(days=s.since_days)]
    imp = store.query(
        "SELECT request_id, user_id, item_id, ts, position, source, features FROM events "  # noqa: S608
        "WHERE event_type = 'impression' AND request_id IS NOT NULL" + where,
        params,
    )
    acts = store.query(
        "SELECT user_id, item_id, event_type, ts, watch_frac FROM events "  # noqa: S608
        "WHERE list_contains(?::VARCHAR[], event_type) AND item_id IS NOT NULL" + where,
        [list(LABEL_EVENT_TYPES), *params],
    )
    return examples_from(imp, acts, names=names, label_window_h=s.label_window_h)


def time_split(examples: Examples, frac: float) -> tuple[Examples, Examples, datetime]:
    """Split whole requests by time: the last ``frac`` of requests go to the second part.

    Returns
    -------
    tuple
        ``(earlier, later, cutoff)``; every later request started at or after ``cutoff``.
    """
    req = examples.frame.select("request_id", "req_ts").unique("request_id").sort("req_ts")
    if req.height < 2:
        msg = f"need at least 2 requests to split by time, got {req.height}"
        raise TrainingError(msg)
    cut = min(max(int(req.height * (1.0 - frac)), 1), req.height - 1)
    cutoff: datetime = req["req_ts"][cut]
    later = pl.col("req_ts") >= cutoff
    return examples.subset(~later), examples.subset(later), cutoff


def _subsample_requests(examples: Examples, max_rows: int, seed: int) -> Examples:
    if examples.n <= max_rows:
        return examples
    req = examples.frame["request_id"].unique()
    keep = req.sample(fraction=max_rows / examples.n, seed=seed)
    logger.info("subsampling %d -> ~%d impressions (whole requests)", examples.n, max_rows)
    return examples.subset(pl.col("request_id").is_in(keep.implode()))


# -- metrics ----------------------------------------------------------------------------------
def ndcg_at_k(
    request_ids: pl.Series | np.ndarray | Sequence[Any],
    scores: np.ndarray,
    relevance: np.ndarray,
    *,
    k: int = NDCG_K,
    gain: str = "exp",
    seed: int = 0,
) -> tuple[float | None, int]:
    """Mean NDCG@k over requests that have any relevance (ties broken at random).

    Parameters
    ----------
    gain
        ``"exp"`` for ``2^rel - 1`` (graded labels) or ``"linear"`` for ``rel`` (continuous
        relevance such as a ground-truth affinity).

    Returns
    -------
    tuple
        ``(mean NDCG, number of requests counted)``; ``(None, 0)`` when none count.
    """
    rng = np.random.default_rng(seed)
    rel = np.asarray(relevance, dtype=np.float64)
    df = pl.DataFrame(
        {
            "rid": pl.Series(request_ids).cast(pl.String),
            "score": np.asarray(scores, dtype=np.float64),
            "g": np.power(2.0, rel) - 1.0 if gain == "exp" else rel,
            "tie": rng.random(len(rel)),
        }
    )
    disc = 1.0 / pl.int_range(2, pl.len() + 2).log(2)
    at_k = pl.int_range(0, pl.len()) < k
    dcg = (
        df.sort(["rid", "score", "tie"], descending=[False, True, False])
        .group_by("rid", maintain_order=True)
        .agg((pl.col("g") * disc).filter(at_k).sum().alias("dcg"))
    )
    idcg = (
        df.sort(["rid", "g"], descending=[False, True])
        .group_by("rid", maintain_order=True)
        .agg((pl.col("g") * disc).filter(at_k).sum().alias("idcg"))
    )
    both = dcg.join(idcg, on="rid").filter(pl.col("idcg") > 0)
    if both.height == 0:
        return None, 0
    ratio = (both["dcg"] / both["idcg"]).to_numpy()
    return float(ratio.mean()), both.height


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (None when only one class is present)."""
    y = np.asarray(labels).astype(bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def evaluate(
    model: LearnedValueModel, holdout: Examples, *, weights: ValueWeights | None = None
) -> dict[str, float | None]:
    """NDCG@10 of the value model and AUC of each head on held-out examples."""
    x = holdout.matrix()
    f = holdout.frame
    metrics: dict[str, float | None] = {}
    value = model.value(x, weights)
    metrics[f"ndcg@{NDCG_K}"], n_req = ndcg_at_k(f["request_id"], value, f["relevance"].to_numpy())
    metrics["n_requests"] = float(n_req)
    for name, p in model.predict_heads(x).items():
        metrics[f"auc_{name}"] = auc(f[name].to_numpy(), p)
    return metrics


def evaluate_scores(scores: np.ndarray, holdout: Examples) -> float | None:
    """NDCG@10 of arbitrary scores on held-out examples."""
    f = holdout.frame
    return ndcg_at_k(f["request_id"], scores, f["relevance"].to_numpy())[0]


def hand_weighted_scores(frame: pl.DataFrame) -> np.ndarray:
    """Scores of the hand-weighted scorer from logged feature columns."""

    q = FeedQuery(user_id=0, limit=10, now=datetime.now(UTC), session_id="eval")
    return np.asarray(HandWeightedScorer().score(q, frame), dtype=np.float64)


# -- training ---------------------------------------------------------------------------------
def _params(s: TrainSettings, **extra: Any) -> dict[str, Any]:
    return {
        "learning_rate": s.learning_rate,
        "num_leaves": s.num_leaves,
        "max_depth": s.max_depth,
        "min_data_in_leaf": s.min_data_in_leaf,
        "max_bin": s.max_bin,
        "num_threads": s.num_threads,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "seed": s.seed,
        "verbosity": -1,
        **extra,
    }


def train_value_model(
    train: Examples,
    *,
    settings: TrainSettings | None = None,
    weights: ValueWeights | None = None,
) -> LearnedValueModel:
    """Fit the heads and the lambdarank ranker on ``train`` (early stopping on its last part).

    The boosters are independent, so ``settings.num_threads`` of them train at once, each on
    one thread: on a shared, busy machine one OpenMP team of two threads per booster spends
    most of its time waiting at barriers (measured: 110 ms per boosting round with two threads
    vs 8 ms with one), while two single-threaded boosters keep both cores busy.
    """
    s = settings or TrainSettings()
    train = _subsample_requests(train, s.max_train_rows, s.seed)
    fit, valid, _ = time_split(train, s.valid_frac)
    names = list(train.feature_names)
    x_fit, x_val = fit.matrix(), valid.matrix()
    base = lgb.Dataset(
        x_fit,
        feature_name=names,
        params={"max_bin": s.max_bin, "verbosity": -1},
        free_raw_data=False,
    ).construct()

    def fit_one(
        params: dict[str, Any],
        y_fit: np.ndarray,
        y_val: np.ndarray,
        has_valid: bool,
        group: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> lgb.Booster:
        params = {**params, "num_threads": 1}
        d_fit = lgb.Dataset(
            x_fit,
            label=y_fit,
            reference=base,
            feature_name=names,
            group=None if group is None else group[0],
        )
        if not has_valid:
            return lgb.train(params, d_fit, num_boost_round=max(s.num_rounds // 4, 10))
        d_val = lgb.Dataset(
            x_val,
            label=y_val,
            reference=d_fit,
            feature_name=names,
            group=None if group is None else group[1],
        )
        stop: list[Any] = [lgb.early_stopping(s.early_stopping_rounds, verbose=False)]
        return lgb.train(
            params, d_fit, num_boost_round=s.num_rounds, valid_sets=[d_val], callbacks=stop
        )

    heads: dict[str, lgb.Booster | float] = {}
    jobs: dict[str, Callable[[], lgb.Booster]] = {}
    for h in HEAD_NAMES:
        y_fit = fit.frame[h].to_numpy().astype(np.float64)
        y_val = valid.frame[h].to_numpy().astype(np.float64)
        pos = int(y_fit.sum())
        if pos < s.min_positives or pos == len(y_fit):
            heads[h] = (pos + 0.5) / (len(y_fit) + 1.0)
            logger.info("head %s: %d positives; kept as a constant %.4g", h, pos, heads[h])
            continue
        has_valid = bool(0 < y_val.sum() < len(y_val))
        params = _params(s, objective="binary", metric="binary_logloss")
        jobs[h] = partial(fit_one, params, y_fit, y_val, has_valid)

    rel_fit = fit.frame["relevance"].to_numpy()
    rel_val = valid.frame["relevance"].to_numpy()
    if rel_fit.max(initial=0) > 0:
        jobs[_RANKER] = partial(
            fit_one,
            _params(s, objective="lambdarank", metric="ndcg", eval_at=[NDCG_K]),
            rel_fit,
            rel_val,
            bool(rel_val.max(initial=0) > 0),
            (fit.group_sizes(), valid.group_sizes()),
        )
    with ThreadPoolExecutor(max_workers=s.num_threads, thread_name_prefix="lgb") as pool:
        futures = {name: pool.submit(fn) for name, fn in jobs.items()}
        fitted = {name: fut.result() for name, fut in futures.items()}
    ranker = fitted.pop(_RANKER, None)
    for h in HEAD_NAMES:
        if h in fitted:
            heads[h] = fitted[h]
    model = LearnedValueModel(
        feature_names=train.feature_names,
        heads={h: heads[h] for h in HEAD_NAMES},
        ranker=ranker,
        weights=weights or ValueWeights(),
    )
    if s.explainer and len(x_fit) >= 100:
        rng = np.random.default_rng(s.seed)
        sample = x_fit
        if len(x_fit) > s.explainer_rows:
            sample = x_fit[rng.choice(len(x_fit), s.explainer_rows, replace=False)]
        model.explainer, fidelity = fit_explainer(model, sample, x_val, seed=s.seed)
        model.meta["explainer_fidelity"] = fidelity
        logger.info("explainer distilled: %s", fidelity)
    return model


def train_and_evaluate(
    examples: Examples,
    *,
    settings: TrainSettings | None = None,
    weights: ValueWeights | None = None,
    baselines: dict[str, Callable[[Examples], np.ndarray]] | None = None,
) -> TrainResult:
    """Split by time, train on the earlier part, evaluate on the later one.

    ``baselines`` maps a name to a function scoring held-out examples; its NDCG@10 on the same
    window is reported as ``<name>_ndcg@10``. The hand-weighted scorer is always included.
    """
    s = settings or TrainSettings()
    t0 = time.perf_counter()
    train, holdout, cutoff = time_split(examples, s.holdout_frac)
    t1 = time.perf_counter()
    model = train_value_model(train, settings=s, weights=weights)
    t2 = time.perf_counter()
    metrics = evaluate(model, holdout)
    all_baselines: dict[str, Callable[[Examples], np.ndarray]] = {
        "hand_weighted": lambda ex: hand_weighted_scores(ex.frame),
        **(baselines or {}),
    }
    for name, fn in all_baselines.items():
        metrics[f"{name}_ndcg@{NDCG_K}"] = evaluate_scores(fn(holdout), holdout)
    t3 = time.perf_counter()
    timings = {"split_s": t1 - t0, "fit_s": t2 - t1, "evaluate_s": t3 - t2}
    logger.info(
        "trained value model n_train=%d n_holdout=%d ndcg@10=%s hand_weighted=%s fit_s=%.1f",
        train.n,
        holdout.n,
        metrics.get(f"ndcg@{NDCG_K}"),
        metrics.get(f"hand_weighted_ndcg@{NDCG_K}"),
        t2 - t1,
    )
    return TrainResult(
        model, metrics, train.n, holdout.n, cutoff, time.perf_counter() - t0, holdout, timings
    )
