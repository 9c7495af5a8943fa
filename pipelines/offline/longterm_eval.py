"""``steerfeed eval longterm``: a surrogate for the six-month answer, and the policies it steers.

Per seed (a fresh catalogue and fresh cohorts from :mod:`pipelines.offline.longterm_simulator`):

1. **Training cohorts** live 26 weeks under a logging policy: the engagement ranking with a
   per-person random tilt over the clip features (what past ranking experiments leave behind),
   so the mix people watch varies.
2. **The surrogate** (the surrogate index of Athey, Chetty, Imbens and Kang): a ridge
   regression of the observed six-month answer (respondents only, weighted by the inverse of a
   response propensity fitted on the same short-term signals) on what a person left in the first
   ``surrogate_weeks`` weeks: weeks active (returns), sessions, minutes, regretted share,
   late-night share, in-the-moment answers, the minute-weighted mix of clip features, minutes
   toward a stated goal. A second ridge predicts long-run retention. Two session-level ridges
   tie the per-person signals back to clips: the in-the-moment answer and regret, each on the
   session's mean clip features.
3. **Validation** on a held-out cohort (same logging policy, people never seen): R², Spearman
   rank correlation and calibration against the latent six-month answer of everyone, against a
   constant and a minutes-only baseline.
4. **A per-clip long-term value** from the surrogate: it is linear in the mix, and regret and the
   in-the-moment answer are linear in the session's clip features, so a clip's credit is the
   change in predicted six-month answer it brings (chain rule through the three), plus the
   goal term for a person with a stated goal on the clip's topic.
5. **Three policies** on one evaluation cohort (the same people and random numbers): engagement
   only (a perfect expected-minutes model); wellbeing-aware (engagement + weight x surrogate
   credit, each standardised); the ablation (engagement + weight x the in-the-moment
   satisfaction head, no surrogate). Six-month satisfaction (latent expected answer, everyone)
   and minutes per person-week, per arm; differences against engagement paired per seed.

Means over seeds come with a t-interval (95%). No figure here guided a setting: the weight is
fixed before running (1.0) and documented.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from pipelines.offline.longterm_simulator import (
    F64,
    FEATURE_NAMES,
    N_TOPICS,
    Clips,
    LongtermConfig,
    People,
    Policy,
    Trajectory,
    expected_minutes,
    make_clips,
    make_people,
    simulate,
)

logger = logging.getLogger(__name__)

ARMS = ("engagement", "wellbeing_surrogate", "ablation_in_moment_head")


class LongtermEvalConfig(BaseModel):
    """What ``steerfeed eval longterm`` runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seeds: int = Field(default=20, ge=2)
    first_seed: int = 0
    sim: LongtermConfig = LongtermConfig()
    training_cohorts: int = Field(default=2, ge=1)
    surrogate_weeks: int = Field(default=6, ge=1)
    weight: float = Field(default=1.0, ge=0.0, description="value weight vs engagement")
    ridge: float = Field(default=1.0, gt=0.0)


# ---------------------------------------------------------------------------- models


@dataclass(frozen=True)
class Ridge:
    """A (weighted) ridge regression on standardised inputs; coefficients on the raw scale."""

    coef: F64
    intercept: float

    def predict(self, x: F64) -> F64:
        """Predictions for the rows of ``x``."""
        return np.asarray(x @ self.coef + self.intercept, dtype=np.float64)


def fit_ridge(x: F64, y: F64, *, alpha: float = 1.0, weights: F64 | None = None) -> Ridge:
    """Closed-form weighted ridge (the intercept is not penalised)."""
    w = np.ones(len(y)) if weights is None else weights
    w = w / w.sum()
    mu = w @ x
    sd = np.sqrt(w @ (x - mu) ** 2)
    sd = np.where(sd > 1e-9, sd, 1.0)
    z = (x - mu) / sd
    ym = float(w @ y)
    a = z.T @ (z * w[:, None]) + alpha / len(y) * np.eye(x.shape[1])
    b = np.linalg.solve(a, z.T @ (w * (y - ym)))
    coef = b / sd
    return Ridge(coef=coef, intercept=ym - float(mu @ coef))


def fit_logistic(x: F64, y: F64, *, alpha: float = 1.0, iters: int = 25) -> Ridge:
    """L2-regularised logistic regression by Newton steps (standardised inputs)."""
    mu = x.mean(axis=0)
    sd = x.std(axis=0)
    sd = np.where(sd > 1e-9, sd, 1.0)
    z = np.column_stack([np.ones(len(y)), (x - mu) / sd])
    beta = np.zeros(z.shape[1])
    pen = alpha * np.eye(z.shape[1])
    pen[0, 0] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(z @ beta)))
        g = z.T @ (p - y) + pen @ beta
        h = z.T @ (z * (p * (1 - p))[:, None]) + pen + 1e-9 * np.eye(z.shape[1])
        beta -= np.linalg.solve(h, g)
    coef = beta[1:] / sd
    return Ridge(coef=coef, intercept=float(beta[0] - mu @ coef))


SHORT_TERM_NAMES: tuple[str, ...] = (
    "weeks_active",
    "sessions_per_week",
    "log_minutes_per_week",
    "regret_share",
    "late_share",
    "mean_answer",
    "answered",
    *(f"mix_{n}" for n in FEATURE_NAMES),
    "goal_share",
    "goal_stated",
)
_I_REGRET = SHORT_TERM_NAMES.index("regret_share")
_I_ANSWER = SHORT_TERM_NAMES.index("mean_answer")
_I_MIX = SHORT_TERM_NAMES.index(f"mix_{FEATURE_NAMES[0]}")
_I_GOAL = SHORT_TERM_NAMES.index("goal_share")


def short_term_features(tr: Trajectory, people: People, weeks: int) -> F64:
    """What each person left in the first ``weeks`` weeks (the surrogate's inputs)."""
    w = slice(0, weeks)
    sessions = tr.sessions[:, w].sum(axis=1)
    minutes = tr.minutes[:, w].sum(axis=1)
    ans_n = tr.answer_n[:, w].sum(axis=1)
    # Nobody answered: the neutral midpoint, and the 'answered' flag says so.
    mean_answer = np.where(ans_n > 0, tr.answer_sum[:, w].sum(axis=1) / np.maximum(ans_n, 1), 3.0)
    mix = tr.mix[:, w, :].sum(axis=1) / np.maximum(minutes, 1e-9)[:, None]
    return np.column_stack(
        [
            tr.active[:, w].mean(axis=1),
            sessions / weeks,
            np.log1p(minutes / weeks),
            tr.regret[:, w].sum(axis=1) / np.maximum(sessions, 1),
            tr.late[:, w].sum(axis=1) / np.maximum(sessions, 1),
            mean_answer,
            (ans_n > 0).astype(np.float64),
            mix,
            tr.goal_minutes[:, w].sum(axis=1) / np.maximum(minutes, 1e-9),
            people.goal_stated.astype(np.float64),
        ]
    )


@dataclass(frozen=True)
class Surrogate:
    """The fitted surrogate and the session-level models that tie it to clips."""

    six_month: Ridge
    retention: Ridge
    in_moment_head: Ridge  # session answer ~ session mean clip features
    regret: Ridge  # session regretted ~ session mean clip features

    def clip_credit(self, clips: Clips) -> F64:
        """Change in predicted six-month answer per clip (chain rule through the surrogate)."""
        b = self.six_month.coef
        direct = clips.features @ b[_I_MIX : _I_MIX + len(FEATURE_NAMES)]
        via_regret = b[_I_REGRET] * self.regret.predict(clips.features)
        via_answer = b[_I_ANSWER] * self.in_moment_head.predict(clips.features)
        return np.asarray(direct + via_regret + via_answer, dtype=np.float64)

    def goal_credit(self, clips: Clips, people: People) -> F64:
        """Extra credit (n_people, n_clips) for clips on a person's stated goal."""
        hit = (people.goal[:, None] == clips.topic[None, :]) & people.goal_stated[:, None]
        return np.asarray(self.six_month.coef[_I_GOAL] * hit, dtype=np.float64)


def fit_surrogate(
    cohorts: list[tuple[Trajectory, People]], *, weeks: int, alpha: float
) -> Surrogate:
    """Fit the surrogate on training cohorts (observed data only)."""
    x = np.concatenate([short_term_features(t, p, weeks) for t, p in cohorts])
    y6 = np.concatenate([t.six_month_answer for t, _ in cohorts])
    ret = np.concatenate([t.retention for t, _ in cohorts])
    answered = np.isfinite(y6)
    # Who answers the six-month question is biased; weight respondents by 1 / propensity.
    prop = fit_logistic(x, answered.astype(np.float64), alpha=alpha).predict(x)
    p = np.clip(1.0 / (1.0 + np.exp(-prop)), 0.05, 1.0)
    six = fit_ridge(x[answered], y6[answered], alpha=alpha, weights=1.0 / p[answered])
    retention = fit_ridge(x, ret, alpha=alpha)
    sx = np.concatenate([t.session_x for t, _ in cohorts])
    sa = np.concatenate([t.session_answer for t, _ in cohorts])
    rx = np.concatenate([t.session_regret_x for t, _ in cohorts])
    rr = np.concatenate([t.session_regret for t, _ in cohorts])
    head = fit_ridge(sx, sa, alpha=alpha)
    regret = fit_ridge(rx, rr, alpha=alpha)
    return Surrogate(six_month=six, retention=retention, in_moment_head=head, regret=regret)


# ---------------------------------------------------------------------------- metrics


def _r2(y: F64, pred: F64) -> float:
    ss = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / ss if ss > 0 else float("nan")


def _calibration(y: F64, pred: F64, bins: int = 10) -> dict[str, float]:
    """Slope of truth on prediction and the mean absolute gap over equal-count bins."""
    slope = float(np.polyfit(pred, y, 1)[0]) if pred.std() > 0 else float("nan")
    order = np.argsort(pred)
    gaps = [abs(float(y[i].mean() - pred[i].mean())) for i in np.array_split(order, bins)]
    return {"slope": slope, "binned_abs_error": float(np.mean(gaps))}


def _spearman(a: F64, b: F64) -> float:
    return float(stats.spearmanr(a, b).statistic)


def _interval(values: list[float]) -> dict[str, float]:
    """Mean and 95% t-interval over seeds."""
    v = np.asarray(values, dtype=np.float64)
    m = float(v.mean())
    if len(v) < 2:
        return {"mean": m, "lo": float("nan"), "hi": float("nan")}
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return {"mean": m, "lo": m - half, "hi": m + half}


# ---------------------------------------------------------------------------- policies


def _z(x: F64) -> F64:
    return np.asarray((x - x.mean()) / (x.std() + 1e-12), dtype=np.float64)


def logging_policy(clips: Clips, people: People, rng: np.random.Generator) -> Policy:
    """The training cohorts' policy: engagement plus a per-person random tilt over features."""
    em = _z(expected_minutes(clips, people))
    fz = (clips.features - clips.features.mean(0)) / (clips.features.std(0) + 1e-12)
    tilt = rng.normal(0.0, 0.7, (len(people.sat0), fz.shape[1]))
    scores = np.asarray(em + tilt @ fz.T, dtype=np.float64)

    def policy(week: int, c: Clips, p: People) -> F64:
        return scores

    return policy


def _fixed(scores: F64) -> Policy:
    def policy(week: int, c: Clips, p: People) -> F64:
        return scores

    return policy


def arm_scores(
    surrogate: Surrogate, clips: Clips, people: People, *, weight: float
) -> dict[str, F64]:
    """Each arm's scores (n_people, n_clips)."""
    em = _z(expected_minutes(clips, people))
    credit = surrogate.clip_credit(clips)[None, :] + surrogate.goal_credit(clips, people)
    head = surrogate.in_moment_head.predict(clips.features)[None, :]
    return {
        "engagement": em,
        "wellbeing_surrogate": em + weight * _z(credit),
        "ablation_in_moment_head": em + weight * _z(np.broadcast_to(head, em.shape)),
    }


# ---------------------------------------------------------------------------- one seed


def run_seed(config: LongtermEvalConfig, seed: int) -> dict[str, Any]:
    """One seed: fit the surrogate, validate it, run the three arms."""
    sim = config.sim
    weeks = config.surrogate_weeks
    if weeks >= sim.weeks:
        msg = f"surrogate_weeks ({weeks}) must be below the simulated weeks ({sim.weeks})"
        raise ValueError(msg)
    rng = np.random.default_rng([seed, 19])
    clips = make_clips(rng, sim.n_clips)
    training: list[tuple[Trajectory, People]] = []
    for _ in range(config.training_cohorts):
        people = make_people(rng, sim.n_people)
        tr = simulate(sim, clips, people, logging_policy(clips, people, rng), rng)
        training.append((tr, people))
    surrogate = fit_surrogate(training, weeks=weeks, alpha=config.ridge)

    # Held-out cohort: people the surrogate never saw, same logging policy.
    hold_people = make_people(rng, sim.n_people)
    hold = simulate(sim, clips, hold_people, logging_policy(clips, hold_people, rng), rng)
    x_hold = short_term_features(hold, hold_people, weeks)
    pred = surrogate.six_month.predict(x_hold)
    truth = hold.six_month_true
    x_train = np.concatenate([short_term_features(t, p, weeks) for t, p in training])
    y_train = np.concatenate([t.six_month_answer for t, _ in training])
    ok = np.isfinite(y_train)
    i_min = SHORT_TERM_NAMES.index("log_minutes_per_week")
    minutes_only = fit_ridge(x_train[ok][:, [i_min]], y_train[ok], alpha=config.ridge)
    obs = np.isfinite(hold.six_month_answer)
    validation = {
        "r2": _r2(truth, pred),
        "spearman": _spearman(truth, pred),
        "r2_observed_answers": _r2(hold.six_month_answer[obs], pred[obs]),
        "r2_constant": _r2(truth, np.full_like(truth, float(np.nanmean(y_train)))),
        "r2_minutes_only": _r2(truth, minutes_only.predict(x_hold[:, [i_min]])),
        "retention_r2": _r2(hold.retention, surrogate.retention.predict(x_hold)),
        "retention_spearman": _spearman(hold.retention, surrogate.retention.predict(x_hold)),
        "naive_respondent_mean": float(np.nanmean(hold.six_month_answer)),
        "true_mean": float(truth.mean()),
        **_calibration(truth, pred),
    }

    # How the surrogate ranks clips, against engagement and the latent truth.
    eng_clip = expected_minutes(clips, hold_people).mean(axis=0)
    credit = surrogate.clip_credit(clips)
    head = surrogate.in_moment_head.predict(clips.features)
    top = max(1, len(credit) // 10)
    top_eng = set(np.argsort(-eng_clip)[:top].tolist())
    top_sur = set(np.argsort(-credit)[:top].tolist())
    ranking = {
        "spearman_surrogate_vs_engagement": _spearman(credit, eng_clip),
        "spearman_surrogate_vs_true_kale": _spearman(credit, clips.kale),
        "spearman_engagement_vs_true_kale": _spearman(eng_clip, clips.kale),
        "spearman_in_moment_head_vs_true_kale": _spearman(head, clips.kale),
        "top_decile_overlap_surrogate_engagement": len(top_eng & top_sur) / top,
    }

    # The three arms: the same people and the same random numbers.
    eval_people = make_people(rng, sim.n_people)
    arm_seed = int(rng.integers(0, 2**31))
    scores = arm_scores(surrogate, clips, eval_people, weight=config.weight)
    arms: dict[str, dict[str, float]] = {}
    for name in ARMS:
        tr = simulate(
            sim, clips, eval_people, _fixed(scores[name]), np.random.default_rng(arm_seed)
        )
        early = surrogate.six_month.predict(short_term_features(tr, eval_people, weeks))
        arms[name] = {
            "six_month": float(tr.six_month_true.mean()),
            "share_better": float((tr.six_month_true >= 3.5).mean()),
            "minutes_per_week": float(tr.minutes.mean()),
            "retention": float(tr.retention.mean()),
            "regret_share": float(tr.regret.sum() / max(tr.sessions.sum(), 1)),
            "surrogate_predicted_six_month": float(early.mean()),
            "naive_respondent_six_month": float(np.nanmean(tr.six_month_answer)),
        }
    coefficients = dict(zip(SHORT_TERM_NAMES, surrogate.six_month.coef.tolist(), strict=True))
    return {
        "seed": seed,
        "validation": validation,
        "ranking": ranking,
        "surrogate_coefficients": coefficients,
        "arms": arms,
    }


# ---------------------------------------------------------------------------- report


def evaluate_longterm(config: LongtermEvalConfig) -> dict[str, Any]:
    """Run every seed and aggregate: validation, ranking, arms and differences with 95% CIs."""
    t0 = time.perf_counter()
    runs = [run_seed(config, config.first_seed + i) for i in range(config.seeds)]
    validation = {k: _interval([r["validation"][k] for r in runs]) for k in runs[0]["validation"]}
    ranking = {k: _interval([r["ranking"][k] for r in runs]) for k in runs[0]["ranking"]}
    coefficients = {
        k: _interval([r["surrogate_coefficients"][k] for r in runs]) for k in SHORT_TERM_NAMES
    }
    arms = {
        a: {k: _interval([r["arms"][a][k] for r in runs]) for k in runs[0]["arms"][a]} for a in ARMS
    }
    diffs: dict[str, dict[str, dict[str, float]]] = {}
    for a in ARMS[1:]:
        diffs[a] = {
            k: _interval([r["arms"][a][k] - r["arms"]["engagement"][k] for r in runs])
            for k in ("six_month", "share_better", "minutes_per_week", "retention", "regret_share")
        }
        base = [r["arms"]["engagement"]["minutes_per_week"] for r in runs]
        diffs[a]["minutes_relative"] = _interval(
            [(r["arms"][a]["minutes_per_week"] - b) / b for r, b in zip(runs, base, strict=True)]
        )
    wb = diffs["wellbeing_surrogate"]["six_month"]
    ab = diffs["ablation_in_moment_head"]["six_month"]
    seconds = time.perf_counter() - t0
    logger.info("eval longterm: %d seeds in %.1f s", config.seeds, seconds)
    return {
        "config": config.model_dump(),
        "seconds": round(seconds, 2),
        "surrogate_validation_held_out": validation,
        "clip_ranking": ranking,
        "surrogate_coefficients": coefficients,
        "arms": arms,
        "difference_vs_engagement": diffs,
        "verdict": {
            "wellbeing_beats_engagement_on_six_month": bool(wb["lo"] > 0),
            "ablation_beats_engagement_on_six_month": bool(ab["lo"] > 0),
            "surrogate_beats_ablation_on_six_month": bool(
                _interval(
                    [
                        r["arms"]["wellbeing_surrogate"]["six_month"]
                        - r["arms"]["ablation_in_moment_head"]["six_month"]
                        for r in runs
                    ]
                )["lo"]
                > 0
            ),
        },
        "per_seed": runs,
    }


__all__ = [
    "ARMS",
    "N_TOPICS",
    "SHORT_TERM_NAMES",
    "LongtermEvalConfig",
    "Surrogate",
    "evaluate_longterm",
    "fit_ridge",
    "fit_surrogate",
    "logging_policy",
    "run_seed",
    "short_term_features",
]
