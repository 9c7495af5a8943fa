"""Training the served ranker from an engagement history that has no impressions (fold rule).

The impression rule (:mod:`ranking.learned.training`) reads the features logged when a page
was served. An imported history (LastFM listens, a catalogue's past views) has engagement but
no impressions, so nothing was ever logged. For it the **fold rule** applies:

1. each person's engagement rows are split at random into a *fit* part (80%) and a *label*
   part (20%), ``folds`` times with different draws;
2. in each fold the retrievers of :mod:`ranking.learned.candidate_features` (EASE, two
   collaborative factorisations, item kNN, RP3beta, friends' engagement, popularity, tag
   profiles) are fitted on the fit part **only**, and they produce the candidates and the
   registry's candidate features; a candidate is relevant when it is in the label part. The
   collaborative score a training row sees therefore comes from a model that never saw its
   label, as a served page's collaborative score comes from a model fitted before the page;
3. one LightGBM ranking booster (``rank_xendcg``; ``lambdarank`` by setting) is trained per
   fold and the boosters are averaged into one booster (:func:`average_boosters`), so serving
   scores one forest (compiled by :mod:`ranking.learned.compiled_trees` like any ranker);
4. the retrievers are refitted on the whole history and saved with the model: serving computes
   the same features from them (:class:`ranking.hydrators.retriever_features.
   RetrieverFeaturesHydrator`) for every candidate of a page.

The action heads need impressions (a skip or a long view is relative to being shown), so a
model trained by this rule has constant heads and ranks by its lambdarank score.

A random tenth of the people (``gate_frac``) is kept out of every booster; the promotion gate
compares the model with the serving one (or the hand-weighted scorer) on their fold-0
candidates and labels.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import polars as pl
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from features.registry import defaults, matrix
from ranking.learned.candidate_features import (
    FEATURE_NAMES,
    CandidateConfig,
    candidate_features,
    fit_retrievers,
)
from ranking.learned.heads import HEAD_NAMES
from ranking.learned.training import Examples, TrainingError, ndcg_at_k
from ranking.learned.value_model import LearnedValueModel, ValueWeights
from ranking.retrieval._matrix import check_interactions

logger = logging.getLogger(__name__)


class HistoryTrainSettings(BaseSettings):
    """The fold rule's settings (env prefix ``STEERFEED_HISTORY_``).

    The objective is a LightGBM listwise ranking objective (``rank_xendcg`` by default,
    ``lambdarank`` as before). Small, well-populated leaves: the labels are sparse (~5
    positives in ~220 candidates per person) and deeper trees overfit the folds (measured on
    LastFM: 31 leaves / 50 rows per leaf scored below the best single retriever; 15 / 200
    above it). One booster per fold, averaged, gained +0.0015 to +0.0026 NDCG@10 on four
    LastFM splits over one booster on pooled folds.
    """

    model_config = SettingsConfigDict(env_prefix="STEERFEED_HISTORY_", extra="forbid")

    # rank_xendcg (a listwise cross-entropy for NDCG) trains ~4x faster than lambdarank and
    # scored the same or slightly higher on the LastFM validation part (0.1898 vs 0.1880, and
    # 0.1902 with feature_fraction 0.6; differences within noise): chosen for its speed.
    objective: Literal["rank_xendcg", "lambdarank"] = "rank_xendcg"
    folds: int = Field(default=4, ge=1, le=16)
    label_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    rounds: int = Field(default=150, ge=1)
    learning_rate: float = Field(default=0.05, gt=0)
    num_leaves: int = Field(default=15, ge=2)
    min_data_in_leaf: int = Field(default=200, ge=1)
    feature_fraction: float = Field(default=0.6, gt=0, le=1)
    gate_frac: float = Field(default=0.1, ge=0.0, lt=0.5)
    num_threads: int = Field(default=2, ge=1)
    seed: int = 0


@dataclass
class HistoryTrainResult:
    """A model trained by the fold rule and its gate examples (people kept out of training)."""

    model: LearnedValueModel
    metrics: dict[str, float | None]
    n_train: int
    holdout: Examples
    seconds: float


def split_fold(
    interactions: pl.DataFrame, *, label_fraction: float = 0.2, seed: int = 0
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split interaction rows at random into a fit part and a label part.

    Every row goes to the label part with probability ``label_fraction``, independently; a
    user whose rows would all go to the label part keeps one row (chosen at random) in fit.

    Returns
    -------
    tuple of pl.DataFrame
        ``(fit, label)``, disjoint, together all rows.
    """
    check_interactions(interactions)
    if not 0.0 < label_fraction < 1.0:
        msg = f"label_fraction must be in (0, 1), got {label_fraction}"
        raise TrainingError(msg)
    rng = np.random.default_rng(seed)
    draw = rng.random(interactions.height)
    frame = interactions.with_columns(_draw=pl.Series(draw)).with_columns(
        _is_label=(pl.col("_draw") < label_fraction)
        & (pl.col("_draw") != pl.col("_draw").max().over("user_id"))
    )
    fit = frame.filter(~pl.col("_is_label")).drop("_draw", "_is_label")
    label = frame.filter(pl.col("_is_label")).drop("_draw", "_is_label")
    return fit, label


def fold_examples(
    fit: pl.DataFrame,
    label: pl.DataFrame,
    *,
    friendships: pl.DataFrame | None = None,
    tags: pl.DataFrame | None = None,
    config: CandidateConfig | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """Candidates with features from ``fit`` and a 0/1 ``label`` column from ``label``.

    Only ``fit`` (and the friendship graph, and tags restricted to ``fit`` pairs) reaches the
    features; ``label`` is joined on afterwards. Users without a labelled candidate are
    dropped (their group carries no ranking signal).
    """
    retrievers = fit_retrievers(fit, friendships=friendships, tags=tags, config=config, seed=seed)
    users = label["user_id"].unique().sort().to_numpy()
    feats = candidate_features(retrievers, users)
    positives = label.select("user_id", "item_id").unique().with_columns(label=pl.lit(1.0))
    examples = feats.join(positives, on=["user_id", "item_id"], how="left").with_columns(
        pl.col("label").fill_null(0.0)
    )
    useful = examples.group_by("user_id").agg(pl.col("label").max()).filter(pl.col("label") > 0)
    return examples.join(useful.select("user_id"), on="user_id", how="semi").sort(
        "user_id", maintain_order=True
    )


_LEAF_LINE = re.compile(r"^(leaf_value|internal_value)=(.*)$")


def average_boosters(boosters: list[lgb.Booster]) -> lgb.Booster:
    """One booster whose raw score is the mean of the boosters' raw scores.

    The trees of every booster are put in one model with their leaf (and internal) values
    divided by the number of boosters: a sum of trees is what a booster predicts, so the
    result predicts the average, and it compiles and explains like any single booster.
    """
    if not boosters:
        msg = "no boosters to average"
        raise TrainingError(msg)
    if len(boosters) == 1:
        return boosters[0]
    scale = 1.0 / len(boosters)
    header = ""
    tail = ""
    trees: list[str] = []
    for b in boosters:
        text = b.model_to_string()
        start = text.index("\nTree=0\n") + 1
        end = text.index("end of trees")
        if not header:
            # tree_sizes lists the byte size of each tree: it no longer holds, leave it out
            header = "".join(
                line + "\n"
                for line in text[:start].splitlines()
                if not line.startswith("tree_sizes=")
            )
            tail = text[end:]
        for block in text[start:end].split("\n\n"):
            if block.strip():
                trees.append(block.strip("\n"))
    out: list[str] = []
    for i, block in enumerate(trees):
        lines = block.splitlines()
        lines[0] = f"Tree={i}"
        for j, line in enumerate(lines):
            m = _LEAF_LINE.match(line)
            if m:
                vals = " ".join(repr(float(v) * scale) for v in m.group(2).split())
                lines[j] = f"{m.group(1)}={vals}"
        out.append("\n".join(lines))
    text = header + "\n" + "\n\n".join(out) + "\n\n\n" + tail
    return lgb.Booster(model_str=text)


def _lgb_params(s: HistoryTrainSettings) -> dict[str, Any]:
    return {
        "objective": s.objective,
        "metric": "ndcg",
        "eval_at": [10, 20],
        "learning_rate": s.learning_rate,
        "num_leaves": s.num_leaves,
        "min_data_in_leaf": s.min_data_in_leaf,
        "feature_fraction": s.feature_fraction,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambdarank_truncation_level": 20,
        "num_threads": s.num_threads,
        "seed": s.seed,
        "verbose": -1,
    }


def _fit_booster(examples: pl.DataFrame, params: dict[str, Any], rounds: int) -> lgb.Booster:
    """One ranking booster on ``examples`` (grouped by user), read through the registry."""
    if examples.height == 0:
        msg = "no training examples: no user has a label among their candidates"
        raise TrainingError(msg)
    groups = examples.group_by("user_id", maintain_order=True).len()["len"].to_numpy()
    dataset = lgb.Dataset(
        matrix(examples, FEATURE_NAMES),
        label=examples["label"].to_numpy(),
        group=groups,
        feature_name=list(FEATURE_NAMES),
    )
    return lgb.train(params, dataset, num_boost_round=rounds)


def _gate_examples(examples: pl.DataFrame) -> Examples:
    """The kept-out people's candidates as :class:`Examples` (one request per person)."""
    # read through the registry (an unknown value takes its default), as serving reads it
    x = matrix(examples, FEATURE_NAMES)
    frame = examples.select(
        pl.col("user_id").cast(pl.String).alias("request_id"),
        "user_id",
        "item_id",
        pl.col("label").cast(pl.Int8).alias("relevance"),
        *[pl.lit(0, dtype=pl.Int8).alias(h) for h in HEAD_NAMES],
    ).with_columns(pl.DataFrame(x, schema=list(FEATURE_NAMES), orient="row"))
    # The other registry features at their defaults ("nothing known"), so the hand-weighted
    # scorer and a model of logged impressions can be compared on these rows at the gate.
    others = {n: v for n, v in defaults().items() if n not in frame.columns}
    frame = frame.with_columns(pl.lit(v, dtype=pl.Float64).alias(n) for n, v in others.items())
    return Examples(frame, FEATURE_NAMES)


def train_from_history(
    interactions: pl.DataFrame,
    *,
    friendships: pl.DataFrame | None = None,
    tags: pl.DataFrame | None = None,
    settings: HistoryTrainSettings | None = None,
    candidates: CandidateConfig | None = None,
    weights: ValueWeights | None = None,
) -> HistoryTrainResult:
    """Train the ranker by the fold rule (module docstring) and refit its retrievers.

    Parameters
    ----------
    interactions
        ``user_id, item_id, weight`` engagement rows (weight = engagement strength).
    friendships
        ``user_id, friend_id`` rows (both directions).
    tags
        ``user_id, item_id, tag_id`` rows (only pairs in a fold's fit part are read).
    settings
        Fold and boosting settings.
    candidates
        Candidate counts and retriever settings.
    weights
        Value weights stored with the model (its heads are constants).

    Returns
    -------
    HistoryTrainResult
        The model (with ``retrievers`` fitted on all of ``interactions``), its NDCG@10 on the
        kept-out people, and those people's examples for the promotion gate.
    """
    s = settings or HistoryTrainSettings()
    cfg = candidates or CandidateConfig()
    check_interactions(interactions)
    start = time.perf_counter()
    users = interactions["user_id"].unique().sort()
    rng = np.random.default_rng(s.seed + 7919)
    gate_users = users.filter(pl.Series(rng.random(len(users)) < s.gate_frac))
    params = _lgb_params(s)
    boosters: list[lgb.Booster] = []
    gate = pl.DataFrame()
    n_train = 0
    n_label = 0
    for f in range(s.folds):
        fold_seed = s.seed * 1000 + f
        fit, label = split_fold(interactions, label_fraction=s.label_fraction, seed=fold_seed)
        ex = fold_examples(
            fit, label, friendships=friendships, tags=tags, config=cfg, seed=fold_seed
        )
        kept_out = pl.col("user_id").is_in(gate_users.implode())
        if f == 0:
            gate = ex.filter(kept_out)
        train = ex.filter(~kept_out)
        n_train += train.height
        n_label += int(train["label"].sum())
        boosters.append(_fit_booster(train, params, s.rounds))
    ranker = average_boosters(boosters)
    n_rows = interactions.height
    # Constant heads: the share of engagement rows is the long-view rate an impression-free
    # history implies; the other actions were never observed as outcomes of a page.
    heads: dict[str, lgb.Booster | float] = {h: (0.5 / (n_rows + 1.0)) for h in HEAD_NAMES}
    model = LearnedValueModel(
        feature_names=FEATURE_NAMES,
        heads=heads,
        ranker=ranker,
        weights=weights or ValueWeights(),
    )
    model.retrievers = fit_retrievers(
        interactions, friendships=friendships, tags=tags, config=cfg, seed=s.seed
    )
    holdout = _gate_examples(gate)
    metrics: dict[str, float | None] = {"n_gate_users": float(gate["user_id"].n_unique())}
    if holdout.n:
        f_ = holdout.frame
        metrics["ndcg@10"], _ = ndcg_at_k(
            f_["request_id"], model.value(holdout.matrix()), f_["relevance"].to_numpy()
        )
        metrics["ease_ndcg@10"], _ = ndcg_at_k(
            f_["request_id"], -f_["ease_rank"].to_numpy(), f_["relevance"].to_numpy()
        )
    seconds = time.perf_counter() - start
    logger.info(
        "history ranker trained folds=%d rows=%d positives=%d gate_ndcg@10=%s s=%.1f",
        s.folds,
        n_train,
        n_label,
        metrics.get("ndcg@10"),
        seconds,
    )
    return HistoryTrainResult(model, metrics, n_train, holdout, seconds)
