"""Off-policy evaluation: estimate a new policy's reward from logs of the serving policy.

Each logged record holds the action the logging policy took, its propensity ``p0`` (the
probability the logging policy gave that action), the observed reward, and the probability
``pi`` the target policy would have given the same action. Importance weights are
``w = pi / p0``.

- :func:`ips_estimate`: ``mean(w * r)``; unbiased when ``p0 > 0`` wherever ``pi > 0``.
- :func:`snips_estimate`: ``sum(w * r) / sum(w)``; slightly biased, much lower variance.
- :func:`doubly_robust_estimate`: ``mean(dm + w * (r - q_logged))`` with a reward model;
  unbiased if either the propensities or the reward model are right.

Confidence intervals are analytic (normal, delta method for SNIPS) or bootstrap percentile.
:func:`exploration_propensities` gives the per-slot propensities of an epsilon-exploring feed,
which is what the logging side must record for these estimators to work.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as sps

from pipelines.experiments.errors import StatsInputError

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
CiMethod = Literal["analytic", "bootstrap"]
_BOOT_CHUNK = 256


@dataclass(frozen=True)
class OffPolicyEstimate:
    """Estimated value of a target policy.

    Attributes
    ----------
    value : float
        Estimated mean reward per logged record under the target policy.
    ci_low, ci_high : float
        ``1 - alpha`` confidence interval.
    se : float
        Standard error (analytic, or bootstrap standard deviation).
    n : int
        Logged records.
    method : str
        ``ips``, ``snips`` or ``dr``.
    effective_sample_size : float
        ``sum(w)^2 / sum(w^2)``; far below ``n`` means few records carry the estimate and the
        interval deserves distrust.
    max_weight : float
        Largest importance weight (after clipping).
    """

    value: float
    ci_low: float
    ci_high: float
    se: float
    n: int
    method: str
    effective_sample_size: float
    max_weight: float


def _vector(values: ArrayLike, name: str, n: int | None) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        msg = f"{name} must be one-dimensional, got shape {arr.shape}"
        raise StatsInputError(msg)
    if n is not None and arr.size != n:
        msg = f"{name} has {arr.size} values, expected {n}"
        raise StatsInputError(msg)
    if not np.all(np.isfinite(arr)):
        msg = f"{name} holds {int(np.count_nonzero(~np.isfinite(arr)))} non-finite values"
        raise StatsInputError(msg)
    return arr


def _weights(
    reward: ArrayLike,
    logging_propensity: ArrayLike,
    target_probability: ArrayLike,
    max_weight: float | None,
) -> tuple[FloatArray, FloatArray]:
    r = _vector(reward, "reward", None)
    if r.size < 2:
        msg = f"need at least 2 logged records, got {r.size}"
        raise StatsInputError(msg)
    p0 = _vector(logging_propensity, "logging_propensity", r.size)
    pi = _vector(target_probability, "target_probability", r.size)
    if np.any((p0 <= 0.0) | (p0 > 1.0)):
        bad = int(np.count_nonzero((p0 <= 0.0) | (p0 > 1.0)))
        msg = f"logging_propensity must lie in (0, 1]; {bad} records do not"
        raise StatsInputError(msg)
    if np.any((pi < 0.0) | (pi > 1.0)):
        bad = int(np.count_nonzero((pi < 0.0) | (pi > 1.0)))
        msg = f"target_probability must lie in [0, 1]; {bad} records do not"
        raise StatsInputError(msg)
    w = pi / p0
    if max_weight is not None:
        if not max_weight > 0.0:
            msg = f"max_weight must be > 0, got {max_weight}"
            raise StatsInputError(msg)
        w = np.minimum(w, max_weight)
    return r, w


def _finish(
    method: str,
    statistic: Callable[[NDArray[np.intp] | None], float],
    analytic_se: float,
    w: FloatArray,
    *,
    alpha: float,
    ci: CiMethod,
    n_boot: int,
    rng: np.random.Generator | None,
) -> OffPolicyEstimate:
    if not 0.0 < alpha < 1.0:
        msg = f"alpha must lie in (0, 1), got {alpha}"
        raise StatsInputError(msg)
    n = w.size
    value = statistic(None)
    if ci == "analytic":
        se = analytic_se
        z = float(sps.norm.ppf(1.0 - alpha / 2.0))
        low, high = value - z * se, value + z * se
    elif ci == "bootstrap":
        if n_boot < 100:
            msg = f"n_boot must be >= 100, got {n_boot}"
            raise StatsInputError(msg)
        gen = rng if rng is not None else np.random.default_rng()
        boots = np.empty(n_boot)
        for start in range(0, n_boot, _BOOT_CHUNK):
            stop = min(start + _BOOT_CHUNK, n_boot)
            idx = gen.integers(0, n, size=(stop - start, n))
            for row, sample in enumerate(idx):
                boots[start + row] = statistic(sample)
        se = float(boots.std(ddof=1))
        low, high = (float(q) for q in np.quantile(boots, [alpha / 2.0, 1.0 - alpha / 2.0]))
    else:
        msg = f"unknown ci method {ci!r}; valid: analytic, bootstrap"
        raise StatsInputError(msg)
    sum_w2 = float(np.square(w).sum())
    ess = float(w.sum()) ** 2 / sum_w2 if sum_w2 > 0.0 else 0.0
    if ess < 0.01 * n:
        logger.warning("off-policy %s: effective sample size %.1f of %d records", method, ess, n)
    return OffPolicyEstimate(
        value=float(value),
        ci_low=float(low),
        ci_high=float(high),
        se=float(se),
        n=n,
        method=method,
        effective_sample_size=ess,
        max_weight=float(w.max()),
    )


def ips_estimate(
    reward: ArrayLike,
    logging_propensity: ArrayLike,
    target_probability: ArrayLike,
    *,
    alpha: float = 0.05,
    ci: CiMethod = "analytic",
    n_boot: int = 1000,
    rng: np.random.Generator | None = None,
    max_weight: float | None = None,
) -> OffPolicyEstimate:
    """Inverse propensity scoring: ``mean(pi / p0 * r)``.

    Parameters
    ----------
    reward : array_like
        Observed reward per logged record.
    logging_propensity : array_like
        Probability, under the logging policy, of the logged action; in ``(0, 1]``.
    target_probability : array_like
        Probability, under the target policy, of the same logged action; in ``[0, 1]``.
    alpha : float, optional
        One minus the confidence level.
    ci : {'analytic', 'bootstrap'}, optional
        Normal interval from the sample variance, or bootstrap percentile interval.
    n_boot : int, optional
        Bootstrap resamples (>= 100).
    rng : numpy.random.Generator or None, optional
        Bootstrap randomness; a fresh unseeded generator when None.
    max_weight : float or None, optional
        Clip importance weights at this value (trades bias for variance).

    Returns
    -------
    OffPolicyEstimate
        Value, interval, standard error and weight diagnostics.

    Raises
    ------
    StatsInputError
        On mismatched lengths, non-finite values or propensities out of range.
    """
    r, w = _weights(reward, logging_propensity, target_probability, max_weight)
    terms = w * r

    def statistic(idx: NDArray[np.intp] | None) -> float:
        return float(terms.mean() if idx is None else terms[idx].mean())

    se = float(terms.std(ddof=1)) / math.sqrt(terms.size)
    return _finish("ips", statistic, se, w, alpha=alpha, ci=ci, n_boot=n_boot, rng=rng)


def snips_estimate(
    reward: ArrayLike,
    logging_propensity: ArrayLike,
    target_probability: ArrayLike,
    *,
    alpha: float = 0.05,
    ci: CiMethod = "analytic",
    n_boot: int = 1000,
    rng: np.random.Generator | None = None,
    max_weight: float | None = None,
) -> OffPolicyEstimate:
    """Self-normalised IPS: ``sum(w * r) / sum(w)`` with ``w = pi / p0``.

    The analytic standard error is the delta-method one,
    ``sqrt(sum((w * (r - V))^2)) / sum(w)``.

    Parameters
    ----------
    reward, logging_propensity, target_probability : array_like
        As in :func:`ips_estimate`.
    alpha, ci, n_boot, rng, max_weight : optional
        As in :func:`ips_estimate`.

    Returns
    -------
    OffPolicyEstimate
        Value, interval, standard error and weight diagnostics.

    Raises
    ------
    StatsInputError
        As :func:`ips_estimate`, and when every weight is zero.
    """
    r, w = _weights(reward, logging_propensity, target_probability, max_weight)
    if not w.sum() > 0.0:
        msg = "snips needs some record the target policy could take (all weights are zero)"
        raise StatsInputError(msg)
    wr = w * r

    def statistic(idx: NDArray[np.intp] | None) -> float:
        if idx is None:
            return float(wr.sum() / w.sum())
        total = w[idx].sum()
        return float(wr[idx].sum() / total) if total > 0.0 else 0.0

    value = statistic(None)
    n = w.size
    se = math.sqrt(float(np.square(w * (r - value)).sum()) * n / (n - 1)) / float(w.sum())
    return _finish("snips", statistic, se, w, alpha=alpha, ci=ci, n_boot=n_boot, rng=rng)


def doubly_robust_estimate(
    reward: ArrayLike,
    logging_propensity: ArrayLike,
    target_probability: ArrayLike,
    reward_pred_logged: ArrayLike,
    reward_pred_target: ArrayLike,
    *,
    alpha: float = 0.05,
    ci: CiMethod = "analytic",
    n_boot: int = 1000,
    rng: np.random.Generator | None = None,
    max_weight: float | None = None,
) -> OffPolicyEstimate:
    """Doubly robust estimate: ``mean(q_target + w * (r - q_logged))``.

    Parameters
    ----------
    reward, logging_propensity, target_probability : array_like
        As in :func:`ips_estimate`.
    reward_pred_logged : array_like
        Reward model's prediction for the logged action in each record's context.
    reward_pred_target : array_like
        Reward model's expected reward under the target policy in each record's context,
        ``sum_a pi(a | x) * q(x, a)`` (the direct-method term).
    alpha, ci, n_boot, rng, max_weight : optional
        As in :func:`ips_estimate`.

    Returns
    -------
    OffPolicyEstimate
        Value, interval, standard error and weight diagnostics.

    Raises
    ------
    StatsInputError
        On mismatched lengths, non-finite values or propensities out of range.
    """
    r, w = _weights(reward, logging_propensity, target_probability, max_weight)
    q_logged = _vector(reward_pred_logged, "reward_pred_logged", r.size)
    q_target = _vector(reward_pred_target, "reward_pred_target", r.size)
    terms = q_target + w * (r - q_logged)

    def statistic(idx: NDArray[np.intp] | None) -> float:
        return float(terms.mean() if idx is None else terms[idx].mean())

    se = float(terms.std(ddof=1)) / math.sqrt(terms.size)
    return _finish("dr", statistic, se, w, alpha=alpha, ci=ci, n_boot=n_boot, rng=rng)


def exploration_propensities(
    n_slots: int,
    epsilon: float,
    n_candidates: int,
    *,
    explored: ArrayLike | None = None,
) -> FloatArray:
    """Propensity of the served item per slot of an epsilon-exploring feed.

    Slots are filled top-down from ``n_candidates`` candidates. At slot ``j`` there are
    ``m = n_candidates - j`` candidates left: with probability ``1 - epsilon`` the slot gets the
    ranker's pick, with probability ``epsilon`` a candidate drawn uniformly from the other
    ``m - 1``. So, conditional on the slots above,

    - the ranker's pick was served with propensity ``1 - epsilon`` (``1`` when ``m == 1``);
    - an explored item was served with propensity ``epsilon / (m - 1)``.

    The propensity of the whole page is the product over its slots.

    Parameters
    ----------
    n_slots : int
        Slots on the page, ``<= n_candidates``.
    epsilon : float
        Exploration probability in ``[0, 1]``.
    n_candidates : int
        Candidates available to the first slot.
    explored : array_like of bool or None, optional
        Per slot, whether it was filled by exploration; None means no slot was (every served
        item was the ranker's pick).

    Returns
    -------
    ndarray
        ``n_slots`` propensities.

    Raises
    ------
    StatsInputError
        On out-of-range arguments, or a slot marked explored when no other candidate was left
        or ``epsilon`` is 0.
    """
    if n_slots < 0 or n_candidates < 1 or n_slots > n_candidates:
        msg = (
            "need 0 <= n_slots <= n_candidates and n_candidates >= 1, "
            f"got {n_slots}, {n_candidates}"
        )
        raise StatsInputError(msg)
    if not 0.0 <= epsilon <= 1.0:
        msg = f"epsilon must lie in [0, 1], got {epsilon}"
        raise StatsInputError(msg)
    flags = (
        np.zeros(n_slots, dtype=bool)
        if explored is None
        else np.asarray(explored, dtype=bool).ravel()
    )
    if flags.size != n_slots:
        msg = f"explored has {flags.size} flags, expected {n_slots}"
        raise StatsInputError(msg)
    others = n_candidates - np.arange(n_slots) - 1  # candidates other than the ranker's pick
    exploit = np.where(others > 0, 1.0 - epsilon, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        explore = np.where(others > 0, epsilon / np.maximum(others, 1), 0.0)
    out = np.where(flags, explore, exploit)
    if np.any(out <= 0.0):
        slots = np.flatnonzero(out <= 0.0).tolist()
        msg = f"slots {slots} have a served item of propensity 0 (explored without a chance to)"
        raise StatsInputError(msg)
    return out.astype(np.float64)
