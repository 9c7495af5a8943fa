"""Simulation checks of the experiment statistics, with known truth.

:func:`verification_report` runs many small simulated experiments through the public functions
of this package and returns the operating characteristics a benchmark command can print:
A/A false-positive rate, confidence-interval coverage with a planted effect, CUPED variance
reduction, SRM alarm rates, mSPRT false positives under continuous peeking, and off-policy
interval coverage. Everything is seeded, so the figures are reproducible.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
from scipy import stats as sps

from pipelines.experiments.assignment import assign_many
from pipelines.experiments.definitions import Arm, Experiment
from pipelines.experiments.errors import StatsInputError
from pipelines.experiments.off_policy import (
    doubly_robust_estimate,
    ips_estimate,
    snips_estimate,
)
from pipelines.experiments.stats import (
    cuped_diff,
    diff_in_means,
    msprt,
    ratio_metric_diff,
    srm_check,
)

logger = logging.getLogger(__name__)

ALPHA = 0.05


def _aa_false_positive_rate(rng: np.random.Generator, n_runs: int, n_users: int) -> float:
    """A/A tests on a skewed metric (exponential, like watch time)."""
    hits = 0
    for _ in range(n_runs):
        a = rng.exponential(2.0, n_users)
        b = rng.exponential(2.0, n_users)
        hits += diff_in_means(a, b, ALPHA).p_value < ALPHA
    return hits / n_runs


def _planted_effect(rng: np.random.Generator, n_runs: int, n_users: int) -> dict[str, float]:
    """Coverage and power of Welch intervals with an additive planted effect on a gamma metric."""
    effect = 0.15
    covered = rejected = 0
    for _ in range(n_runs):
        a = rng.gamma(2.0, 1.0, n_users)
        b = rng.gamma(2.0, 1.0, n_users) + effect
        est = diff_in_means(a, b, ALPHA)
        covered += est.ci_low <= effect <= est.ci_high
        rejected += est.p_value < ALPHA
    return {"ci_coverage": covered / n_runs, "power": rejected / n_runs, "effect": effect}


def _ratio_coverage(rng: np.random.Generator, n_runs: int, n_users: int) -> float:
    """Delta-method coverage for likes per impression with a 10 % relative lift."""
    base_mean = 2.0 / (2.0 + 18.0)  # mean of Beta(2, 18)
    lift = 0.10
    truth = base_mean * lift  # like rate independent of impressions, so ratio = E[p]
    covered = 0
    for _ in range(n_runs):
        impr_a = rng.poisson(15.0, n_users) + 1
        impr_b = rng.poisson(15.0, n_users) + 1
        likes_a = rng.binomial(impr_a, rng.beta(2.0, 18.0, n_users))
        likes_b = rng.binomial(impr_b, rng.beta(2.0, 18.0, n_users) * (1.0 + lift))
        est = ratio_metric_diff(likes_a, impr_a, likes_b, impr_b, alpha=ALPHA)
        covered += est.ci_low <= truth <= est.ci_high
    return covered / n_runs


def _cuped(rng: np.random.Generator, n_runs: int, n_users: int) -> dict[str, float]:
    """CUPED on a metric whose pre-period value correlates ~0.7 with the in-experiment one."""
    effect = 0.1
    reductions: list[float] = []
    covered = 0
    raw_rejected = adj_rejected = 0
    for _ in range(n_runs):
        user_a = rng.normal(0.0, 1.0, n_users)
        user_b = rng.normal(0.0, 1.0, n_users)
        x_a = 5.0 + user_a + rng.normal(0.0, 0.5, n_users)
        x_b = 5.0 + user_b + rng.normal(0.0, 0.5, n_users)
        y_a = 5.0 + user_a + rng.normal(0.0, 0.75, n_users)
        y_b = 5.0 + user_b + rng.normal(0.0, 0.75, n_users) + effect
        res = cuped_diff(y_a, x_a, y_b, x_b, alpha=ALPHA)
        reductions.append(res.variance_reduction)
        covered += res.estimate.ci_low <= effect <= res.estimate.ci_high
        raw_rejected += res.raw.p_value < ALPHA
        adj_rejected += res.estimate.p_value < ALPHA
    return {
        "variance_reduction_mean": float(np.mean(reductions)),
        "variance_reduction_min": float(np.min(reductions)),
        "variance_reduction_theory": 1.0 / ((1.0 + 0.75**2) * (1.0 + 0.5**2)),  # rho^2
        "ci_coverage": covered / n_runs,
        "power_raw": raw_rejected / n_runs,
        "power_cuped": adj_rejected / n_runs,
    }


def _srm(rng: np.random.Generator, n_runs: int, n_users: int) -> dict[str, float]:
    """SRM alarms on a broken 52/48 split and on a fair split, plus the real hash assignment."""
    broken = rng.binomial(n_users, 0.52, n_runs)
    fair = rng.binomial(n_users, 0.50, n_runs)
    broken_alarms = sum(srm_check([c, n_users - c], [0.5, 0.5]).alarm for c in broken)
    fair_alarms = sum(srm_check([c, n_users - c], [0.5, 0.5]).alarm for c in fair)
    experiment = Experiment(
        name="srm-verification",
        salt=f"srm-{int(rng.integers(1_000_000_000))}",
        arms=[Arm(name="control"), Arm(name="treatment")],
        status="running",
    )
    counts = assign_many(experiment, (f"user-{i}" for i in range(n_users)))
    hashed = srm_check({name: counts[name] for name in experiment.arm_names}, experiment.arm_shares)
    return {
        "alarm_rate_broken_52_48": broken_alarms / n_runs,
        "alarm_rate_fair": fair_alarms / n_runs,
        "hash_assignment_p_value": hashed.p_value,
        "hash_assignment_control_share": counts["control"] / n_users,
    }


def _msprt(
    rng: np.random.Generator, n_runs: int, looks: int, batch: int, tau2: float
) -> dict[str, float]:
    """mSPRT false positives when peeking after every batch, versus naive repeated z-tests."""
    z_crit = float(sps.norm.ppf(1.0 - ALPHA / 2.0))
    false_pos = naive_false_pos = 0
    detected = covered = 0
    stop_looks: list[int] = []
    effect = 0.2
    for _ in range(n_runs):
        a = rng.normal(0.0, 1.0, (looks, batch))
        b = rng.normal(0.0, 1.0, (looks, batch))
        res = msprt(a, b, tau2, alpha=ALPHA)
        false_pos += res.rejected
        # naive: a fixed-horizon z-test at every look, stop at the first "significant" one
        n = np.arange(1, looks + 1) * batch
        diff = np.cumsum(b.sum(axis=1)) / n - np.cumsum(a.sum(axis=1)) / n
        naive_false_pos += bool(np.any(np.abs(diff) / np.sqrt(2.0 / n) > z_crit))
        power = msprt(a, b + effect, tau2, alpha=ALPHA)
        covered += bool(power.ci_low[-1] <= effect <= power.ci_high[-1])
        if power.first_rejection is not None:
            detected += 1
            stop_looks.append(power.first_rejection + 1)
    return {
        "false_positive_rate": false_pos / n_runs,
        "naive_peeking_false_positive_rate": naive_false_pos / n_runs,
        "power_effect_0.2": detected / n_runs,
        "confidence_sequence_coverage": covered / n_runs,
        "median_stopping_look": float(np.median(stop_looks)) if stop_looks else math.nan,
        "looks": looks,
        "batch_per_arm": batch,
        "tau2": tau2,
    }


def _off_policy(rng: np.random.Generator, n_runs: int, n_logs: int) -> dict[str, float]:
    """Interval coverage of IPS, SNIPS and DR on a contextual bandit with known value."""
    n_ctx, n_act = 5, 4
    mu = rng.uniform(0.05, 0.5, (n_ctx, n_act))
    logging_policy = 0.6 * rng.dirichlet(np.ones(n_act), n_ctx) + 0.4 / n_act
    target = np.full((n_ctx, n_act), 0.1 / (n_act - 1))
    target[np.arange(n_ctx), mu.argmax(axis=1)] = 0.9
    truth = float(np.mean((target * mu).sum(axis=1)))
    model = np.clip(mu + rng.normal(0.0, 0.08, mu.shape), 0.0, 1.0)  # a biased reward model
    cover = {"ips": 0, "snips": 0, "dr": 0}
    cum = logging_policy.cumsum(axis=1)
    for _ in range(n_runs):
        ctx = rng.integers(0, n_ctx, n_logs)
        act = (rng.random(n_logs)[:, None] > cum[ctx]).sum(axis=1)
        act = np.minimum(act, n_act - 1)
        reward = (rng.random(n_logs) < mu[ctx, act]).astype(np.float64)
        p0, pi = logging_policy[ctx, act], target[ctx, act]
        for name, est in (
            ("ips", ips_estimate(reward, p0, pi, alpha=ALPHA)),
            ("snips", snips_estimate(reward, p0, pi, alpha=ALPHA)),
            (
                "dr",
                doubly_robust_estimate(
                    reward, p0, pi, model[ctx, act], (target * model).sum(axis=1)[ctx], alpha=ALPHA
                ),
            ),
        ):
            cover[name] += est.ci_low <= truth <= est.ci_high
    return {f"{name}_ci_coverage": hits / n_runs for name, hits in cover.items()}


def verification_report(*, n_runs: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Run every simulation check and return the measured figures.

    Parameters
    ----------
    n_runs : int, optional
        Simulated experiments per check (A/A, planted effect, ratio, SRM, mSPRT); CUPED and
        off-policy use ``min(n_runs, 400)``. At 1000 the whole report takes tens of seconds.
    seed : int, optional
        Seed of the NumPy generator; the report is reproducible for a given seed.

    Returns
    -------
    dict[str, Any]
        Nested figures by check, plus ``alpha``, ``n_runs``, ``seed`` and ``seconds``.

    Raises
    ------
    StatsInputError
        If ``n_runs < 10``.
    """
    if n_runs < 10:
        msg = f"n_runs must be >= 10 for meaningful rates, got {n_runs}"
        raise StatsInputError(msg)
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    small = min(n_runs, 400)
    report: dict[str, Any] = {"alpha": ALPHA, "n_runs": n_runs, "seed": seed}
    report["aa_false_positive_rate"] = _aa_false_positive_rate(rng, n_runs, 400)
    report["planted_effect"] = _planted_effect(rng, n_runs, 400)
    report["ratio_metric_ci_coverage"] = _ratio_coverage(rng, n_runs, 400)
    report["cuped"] = _cuped(rng, small, 500)
    report["srm"] = _srm(rng, n_runs, 20_000)
    report["msprt"] = _msprt(rng, n_runs, looks=50, batch=40, tau2=0.04)
    report["off_policy"] = _off_policy(rng, small, 2000)
    report["seconds"] = round(time.perf_counter() - started, 2)
    logger.info(
        "verification report n_runs=%d seed=%d aa_fpr=%.3f coverage=%.3f cuped_vr=%.3f "
        "msprt_fpr=%.3f ms=%.0f",
        n_runs,
        seed,
        report["aa_false_positive_rate"],
        report["planted_effect"]["ci_coverage"],
        report["cuped"]["variance_reduction_mean"],
        report["msprt"]["false_positive_rate"],
        report["seconds"] * 1000.0,
    )
    return report
