"""Statistics for A/B experiments.

Conventions: ``a`` is the control arm and ``b`` the treatment, so every difference is
``b - a`` and a relative difference is ``(b - a) / a``. Inputs are one value per user (the
randomisation unit); metrics over impressions are ratio metrics and go through
:func:`ratio_metric_diff`.

- :func:`diff_in_means`: Welch's t-test and confidence interval.
- :func:`ratio_metric_diff`: ratio of sums (e.g. likes per impression) with the delta method.
- :func:`cuped_adjust` / :func:`cuped_diff`: variance reduction with a pre-period covariate.
- :func:`srm_check`: sample-ratio mismatch (chi-square goodness of fit).
- :func:`msprt` / :func:`msprt_pvalues`: always-valid p-values (normal-mixture mSPRT) that stay
  valid however often one peeks.
- :func:`guardrail_verdict`: pass / fail / inconclusive over guardrail metrics.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as sps

from pipelines.experiments.errors import StatsInputError

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
Direction = Literal["increase_bad", "decrease_bad"]
VerdictStatus = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class Estimate:
    """A treatment-minus-control difference with its uncertainty.

    Attributes
    ----------
    diff : float
        ``mean_b - mean_a``.
    ci_low, ci_high : float
        Two-sided ``1 - alpha`` confidence interval of ``diff``.
    p_value : float
        Two-sided p-value of ``diff == 0``.
    rel_diff : float
        ``diff / mean_a`` (NaN when ``mean_a == 0``).
    n_a, n_b : int
        Users in each arm.
    se : float
        Standard error of ``diff``.
    mean_a, mean_b : float
        Per-arm means (for a ratio metric: ratio of sums).
    """

    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    rel_diff: float
    n_a: int
    n_b: int
    se: float = math.nan
    mean_a: float = math.nan
    mean_b: float = math.nan

    @property
    def significant(self) -> bool:
        """Whether the confidence interval excludes zero."""
        return self.ci_low > 0.0 or self.ci_high < 0.0


@dataclass(frozen=True)
class CupedEstimate:
    """Result of :func:`cuped_diff`.

    Attributes
    ----------
    estimate : Estimate
        Difference in means of the CUPED-adjusted metric (same expectation as the raw one).
    theta : float
        Regression coefficient of the metric on the pre-period covariate (pooled over arms).
    variance_reduction : float
        ``1 - Var(adjusted diff) / Var(raw diff)``, as estimated on these data.
    raw : Estimate
        The unadjusted Welch estimate, for comparison.
    """

    estimate: Estimate
    theta: float
    variance_reduction: float
    raw: Estimate


@dataclass(frozen=True)
class SrmResult:
    """Sample-ratio-mismatch check.

    Attributes
    ----------
    chi2 : float
        Pearson chi-square statistic.
    p_value : float
        Its p-value under the expected shares.
    alarm : bool
        ``p_value < threshold`` (0.001 by default): assignment or logging is broken and the
        experiment's results should not be trusted.
    """

    chi2: float
    p_value: float
    alarm: bool


@dataclass(frozen=True)
class MsprtResult:
    """Sequential test over looks (see :func:`msprt`).

    Attributes
    ----------
    p_values : ndarray
        Always-valid p-value after each look, non-increasing.
    ci_low, ci_high : ndarray
        Always-valid ``1 - alpha`` confidence sequence of ``mean_b - mean_a`` (running
        intersection, so nested); NaN before a look has enough data.
    diffs : ndarray
        ``mean_b - mean_a`` on the cumulative data at each look.
    alpha : float
        Level used for ``rejected`` and the confidence sequence.
    """

    p_values: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    diffs: FloatArray
    alpha: float

    @property
    def rejected(self) -> bool:
        """Whether the null hypothesis was rejected at some look."""
        return bool(self.p_values.size and self.p_values[-1] < self.alpha)

    @property
    def first_rejection(self) -> int | None:
        """Index of the first look whose p-value fell below ``alpha``, or None."""
        hits = np.flatnonzero(self.p_values < self.alpha)
        return int(hits[0]) if hits.size else None


@dataclass(frozen=True)
class Verdict:
    """Outcome of :func:`guardrail_verdict`.

    Attributes
    ----------
    status : {'pass', 'fail', 'inconclusive'}
        ``fail`` if any guardrail is confidently worse than the tolerance; ``pass`` if every
        guardrail is confidently within it; ``inconclusive`` otherwise.
    reasons : list[str]
        One line per guardrail explaining its outcome.
    """

    status: VerdictStatus
    reasons: list[str] = field(default_factory=list)


def _as_1d(values: ArrayLike, name: str, *, min_n: int = 2) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        msg = f"{name} must be one-dimensional, got shape {arr.shape}"
        raise StatsInputError(msg)
    if arr.size < min_n:
        msg = f"{name} needs at least {min_n} observations, got {arr.size}"
        raise StatsInputError(msg)
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        msg = f"{name} holds {bad} non-finite values"
        raise StatsInputError(msg)
    return arr


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        msg = f"alpha must lie in (0, 1), got {alpha}"
        raise StatsInputError(msg)


def _rel(diff: float, base: float) -> float:
    return diff / base if base != 0.0 else math.nan


def _normal_estimate(
    diff: float, se: float, alpha: float, n_a: int, n_b: int, mean_a: float, mean_b: float
) -> Estimate:
    """Estimate with a normal-approximation interval and p-value."""
    if se > 0.0:
        z = sps.norm.ppf(1.0 - alpha / 2.0)
        p = float(2.0 * sps.norm.sf(abs(diff) / se))
        low, high = diff - z * se, diff + z * se
    else:
        p = 1.0 if diff == 0.0 else 0.0
        low = high = diff
    return Estimate(
        diff=diff,
        ci_low=float(low),
        ci_high=float(high),
        p_value=p,
        rel_diff=_rel(diff, mean_a),
        n_a=n_a,
        n_b=n_b,
        se=se,
        mean_a=mean_a,
        mean_b=mean_b,
    )


def diff_in_means(a: ArrayLike, b: ArrayLike, alpha: float = 0.05) -> Estimate:
    """Welch's unequal-variance t-test of ``mean(b) - mean(a)``.

    The test, interval and degrees of freedom come from ``scipy.stats.ttest_ind`` with
    ``equal_var=False``. When both arms are constant the standard error is zero and the t
    statistic undefined (scipy answers NaN); this function then returns a point interval at
    the difference and a p-value of 1 when the arms are equal, 0 when they differ.

    Parameters
    ----------
    a, b : array_like
        One value per user in the control and treatment arms (at least two each).
    alpha : float, optional
        One minus the confidence level of the interval.

    Returns
    -------
    Estimate
        Difference, Welch t interval with Welch-Satterthwaite degrees of freedom, p-value.

    Raises
    ------
    StatsInputError
        On fewer than two values per arm or non-finite values.
    """
    _check_alpha(alpha)
    xa, xb = _as_1d(a, "a"), _as_1d(b, "b")
    n_a, n_b = xa.size, xb.size
    mean_a, mean_b = float(xa.mean()), float(xb.mean())
    diff = mean_b - mean_a
    se = math.sqrt(float(xa.var(ddof=1)) / n_a + float(xb.var(ddof=1)) / n_b)
    if se == 0.0:
        return _normal_estimate(diff, 0.0, alpha, n_a, n_b, mean_a, mean_b)
    with warnings.catch_warnings():
        # scipy warns of "catastrophic cancellation" for any constant arm with a non-zero
        # value, whose variance is exactly zero and fine for Welch (the other arm's is not).
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        res = sps.ttest_ind(xb, xa, equal_var=False)
    ci = res.confidence_interval(confidence_level=1.0 - alpha)
    return Estimate(
        diff=diff,
        ci_low=float(ci.low),
        ci_high=float(ci.high),
        p_value=float(res.pvalue),
        rel_diff=_rel(diff, mean_a),
        n_a=n_a,
        n_b=n_b,
        se=se,
        mean_a=mean_a,
        mean_b=mean_b,
    )


def _ratio_and_var(num: FloatArray, den: FloatArray, name: str) -> tuple[float, float]:
    """Ratio of sums and its delta-method variance (per-user numerator and denominator)."""
    if num.size != den.size:
        msg = f"{name}: numerator and denominator differ in length ({num.size} vs {den.size})"
        raise StatsInputError(msg)
    n = num.size
    mu_x, mu_y = float(num.mean()), float(den.mean())
    if mu_y <= 0.0:
        msg = f"{name}: denominator must have a positive mean, got {mu_y}"
        raise StatsInputError(msg)
    var_x, var_y = float(num.var(ddof=1)), float(den.var(ddof=1))
    cov_xy = float(np.cov(num, den, ddof=1)[0, 1])
    ratio = mu_x / mu_y
    var = (var_x - 2.0 * ratio * cov_xy + ratio**2 * var_y) / (mu_y**2 * n)
    return ratio, max(var, 0.0)


def ratio_metric_diff(
    num_a: ArrayLike,
    den_a: ArrayLike,
    num_b: ArrayLike,
    den_b: ArrayLike,
    *,
    alpha: float = 0.05,
) -> Estimate:
    """Difference of ratio metrics (``sum(num) / sum(den)`` per arm) by the delta method.

    Users are the randomisation unit, so the numerator and denominator of one user are
    correlated; treating impressions as independent would understate the variance.

    Parameters
    ----------
    num_a, den_a : array_like
        Per-user numerator (e.g. likes) and denominator (e.g. impressions) in the control arm.
    num_b, den_b : array_like
        The same in the treatment arm.
    alpha : float, optional
        One minus the confidence level.

    Returns
    -------
    Estimate
        ``mean_a``/``mean_b`` are the two ratios; normal-approximation interval and p-value.

    Raises
    ------
    StatsInputError
        On mismatched lengths, fewer than two users, or a non-positive mean denominator.
    """
    _check_alpha(alpha)
    ratio_a, var_a = _ratio_and_var(_as_1d(num_a, "num_a"), _as_1d(den_a, "den_a"), "arm a")
    ratio_b, var_b = _ratio_and_var(_as_1d(num_b, "num_b"), _as_1d(den_b, "den_b"), "arm b")
    n_a, n_b = np.asarray(num_a).size, np.asarray(num_b).size
    diff = ratio_b - ratio_a
    return _normal_estimate(diff, math.sqrt(var_a + var_b), alpha, n_a, n_b, ratio_a, ratio_b)


def cuped_adjust(y: ArrayLike, x_pre: ArrayLike) -> tuple[FloatArray, float]:
    """CUPED adjustment of a metric by its pre-period covariate.

    ``y_adj = y - theta * (x_pre - mean(x_pre))`` with ``theta = cov(y, x_pre) / var(x_pre)``,
    which keeps the mean of ``y`` and removes the part of its variance explained by ``x_pre``.

    Parameters
    ----------
    y : array_like
        Metric per user during the experiment.
    x_pre : array_like
        The same users' covariate from before the experiment (unaffected by treatment).

    Returns
    -------
    tuple[ndarray, float]
        Adjusted metric and ``theta`` (0 when ``x_pre`` is constant).

    Raises
    ------
    StatsInputError
        On mismatched lengths or fewer than two values.
    """
    yy, xx = _as_1d(y, "y"), _as_1d(x_pre, "x_pre")
    if yy.size != xx.size:
        msg = f"y and x_pre differ in length ({yy.size} vs {xx.size})"
        raise StatsInputError(msg)
    var_x = float(xx.var(ddof=1))
    theta = float(np.cov(yy, xx, ddof=1)[0, 1]) / var_x if var_x > 0.0 else 0.0
    return yy - theta * (xx - xx.mean()), theta


def cuped_diff(
    y_a: ArrayLike,
    x_a: ArrayLike,
    y_b: ArrayLike,
    x_b: ArrayLike,
    *,
    alpha: float = 0.05,
) -> CupedEstimate:
    """Difference in means after CUPED adjustment, with the variance reduction achieved.

    ``theta`` and the centring mean of the covariate are pooled over both arms, so the same
    linear adjustment applies to every user and the difference stays unbiased under
    randomisation.

    Parameters
    ----------
    y_a, x_a : array_like
        Control metric and pre-period covariate per user.
    y_b, x_b : array_like
        Treatment metric and covariate per user.
    alpha : float, optional
        One minus the confidence level.

    Returns
    -------
    CupedEstimate
        Adjusted Welch estimate, ``theta``, variance reduction and the raw estimate.

    Raises
    ------
    StatsInputError
        On mismatched lengths or too few values.
    """
    ya, xa, yb, xb = (
        _as_1d(y_a, "y_a"),
        _as_1d(x_a, "x_a"),
        _as_1d(y_b, "y_b"),
        _as_1d(x_b, "x_b"),
    )
    if ya.size != xa.size or yb.size != xb.size:
        msg = (
            f"metric and covariate differ in length: a {ya.size} vs {xa.size}, "
            f"b {yb.size} vs {xb.size}"
        )
        raise StatsInputError(msg)
    adjusted, theta = cuped_adjust(np.concatenate([ya, yb]), np.concatenate([xa, xb]))
    raw = diff_in_means(ya, yb, alpha)
    adj = diff_in_means(adjusted[: ya.size], adjusted[ya.size :], alpha)
    # The adjusted metric keeps the raw means; report them so rel_diff stays interpretable.
    adj = Estimate(
        diff=adj.diff,
        ci_low=adj.ci_low,
        ci_high=adj.ci_high,
        p_value=adj.p_value,
        rel_diff=_rel(adj.diff, raw.mean_a),
        n_a=adj.n_a,
        n_b=adj.n_b,
        se=adj.se,
        mean_a=raw.mean_a,
        mean_b=raw.mean_a + adj.diff,
    )
    reduction = 1.0 - (adj.se / raw.se) ** 2 if raw.se > 0.0 else 0.0
    return CupedEstimate(estimate=adj, theta=theta, variance_reduction=reduction, raw=raw)


def srm_check(
    observed_counts: Sequence[int] | Mapping[str, int] | ArrayLike,
    expected_shares: Sequence[float] | Mapping[str, float] | ArrayLike,
    *,
    threshold: float = 0.001,
) -> SrmResult:
    """Chi-square test of sample-ratio mismatch (``scipy.stats.chisquare``).

    No users at all is no evidence of a mismatch: the result is ``chi2 = 0``, ``p = 1``.

    Parameters
    ----------
    observed_counts : sequence, mapping or array_like
        Users per arm. Mappings (arm name to count) are matched by key with
        ``expected_shares``.
    expected_shares : sequence, mapping or array_like
        Intended share per arm (normalised, so weights work too).
    threshold : float, optional
        Alarm when the p-value falls below it (0.001, the usual SRM bar).

    Returns
    -------
    SrmResult
        Statistic, p-value and alarm flag.

    Raises
    ------
    StatsInputError
        On mismatched arms, fewer than two arms, negative counts or non-positive shares.
    """
    if isinstance(observed_counts, Mapping) or isinstance(expected_shares, Mapping):
        if not (isinstance(observed_counts, Mapping) and isinstance(expected_shares, Mapping)):
            msg = "observed_counts and expected_shares must both be mappings or both sequences"
            raise StatsInputError(msg)
        if set(observed_counts) != set(expected_shares):
            msg = (
                f"arms differ: observed {sorted(observed_counts)}, "
                f"expected {sorted(expected_shares)}"
            )
            raise StatsInputError(msg)
        keys = sorted(observed_counts)
        obs = np.array([observed_counts[k] for k in keys], dtype=np.float64)
        shares = np.array([expected_shares[k] for k in keys], dtype=np.float64)
    else:
        obs = np.asarray(observed_counts, dtype=np.float64).ravel()
        shares = np.asarray(expected_shares, dtype=np.float64).ravel()
    if obs.size != shares.size or obs.size < 2:
        msg = f"need matching counts and shares for >= 2 arms, got {obs.size} and {shares.size}"
        raise StatsInputError(msg)
    if np.any(obs < 0) or np.any(shares <= 0) or not np.all(np.isfinite(shares)):
        msg = f"counts must be >= 0 and shares > 0, got {obs.tolist()} and {shares.tolist()}"
        raise StatsInputError(msg)
    total = float(obs.sum())
    if total == 0.0:
        return SrmResult(chi2=0.0, p_value=1.0, alarm=False)
    res = sps.chisquare(obs, f_exp=shares / shares.sum() * total)
    chi2, p = float(res.statistic), float(res.pvalue)
    result = SrmResult(chi2=chi2, p_value=p, alarm=p < threshold)
    if result.alarm:
        logger.info("sample ratio mismatch chi2=%.2f p=%.2g counts=%s", chi2, p, obs.tolist())
    return result


def _cumulative_moments(
    stream: Iterable[ArrayLike], name: str
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Cumulative n, mean and unbiased variance after each batch (Chan's pairwise update)."""
    batches = [np.asarray(batch, dtype=np.float64).ravel() for batch in stream]
    if not batches:
        msg = f"{name} holds no looks"
        raise StatsInputError(msg)
    looks = len(batches)
    n_out = np.zeros(looks)
    mean_out = np.full(looks, np.nan)
    var_out = np.full(looks, np.nan)
    n, mean, m2 = 0.0, 0.0, 0.0
    for k, batch in enumerate(batches):
        if not np.all(np.isfinite(batch)):
            msg = f"{name} holds non-finite values at look {k}"
            raise StatsInputError(msg)
        if batch.size:
            n_k, mean_k = float(batch.size), float(batch.mean())
            m2_k = float(np.square(batch - mean_k).sum())
            total = n + n_k
            delta = mean_k - mean
            mean += delta * n_k / total
            m2 += m2_k + delta**2 * n * n_k / total
            n = total
        n_out[k] = n
        if n > 0:
            mean_out[k] = mean
        if n > 1:
            var_out[k] = m2 / (n - 1)
    return n_out, mean_out, var_out


def msprt(
    a_stream: Iterable[ArrayLike],
    b_stream: Iterable[ArrayLike],
    tau2: float,
    *,
    alpha: float = 0.05,
    sigma2: float | tuple[float, float] | None = None,
) -> MsprtResult:
    """Mixture sequential probability ratio test of ``mean(b) - mean(a) == 0``.

    At look ``k`` the cumulative difference ``z`` has variance ``V = s_a^2/n_a + s_b^2/n_b``;
    with a ``N(0, tau2)`` mixture over the true difference the likelihood ratio is

    ``Lambda = sqrt(V / (V + tau2)) * exp(z^2 * tau2 / (2 V (V + tau2)))``

    (Johari, Pekelis, Walsh 2017). Under the null it is a martingale in information time (the
    difference in means has independent increments for any arm sizes), so by Ville's
    inequality ``p_k = min(1, min_{j<=k} 1 / Lambda_j)`` is valid at every look: peeking after
    each batch and stopping at the first ``p < alpha`` keeps the false-positive rate <= alpha.

    Parameters
    ----------
    a_stream, b_stream : sequence of array_like
        New observations per look (batch ``k`` of each arm arrives at look ``k``); same number
        of looks, batches may differ in size. A 2-D array reads as one row per look.
    tau2 : float
        Variance of the normal mixture over the difference; match it to the squared size of
        effects worth detecting (in the metric's units).
    alpha : float, optional
        Level for :attr:`MsprtResult.rejected` and the confidence sequence.
    sigma2 : float, (float, float) or None, optional
        Known per-user variance (common, or per arm). None plugs in the cumulative sample
        variances, the usual practice for large streams.

    Returns
    -------
    MsprtResult
        Always-valid p-values, confidence sequence and running differences.

    Raises
    ------
    StatsInputError
        On ``tau2 <= 0``, differing numbers of looks or non-finite data.
    """
    _check_alpha(alpha)
    if not tau2 > 0.0 or not math.isfinite(tau2):
        msg = f"tau2 must be a positive finite number, got {tau2}"
        raise StatsInputError(msg)
    n_a, mean_a, var_a = _cumulative_moments(a_stream, "a_stream")
    n_b, mean_b, var_b = _cumulative_moments(b_stream, "b_stream")
    if n_a.size != n_b.size:
        msg = f"a_stream and b_stream differ in number of looks ({n_a.size} vs {n_b.size})"
        raise StatsInputError(msg)
    if sigma2 is not None:
        s_a, s_b = sigma2 if isinstance(sigma2, tuple) else (sigma2, sigma2)
        var_a, var_b = np.full_like(n_a, s_a), np.full_like(n_b, s_b)
        ready = (n_a > 0) & (n_b > 0)
    else:
        ready = (n_a > 1) & (n_b > 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        v = var_a / n_a + var_b / n_b
        z = mean_b - mean_a
        ready &= v > 0
        log_lr = 0.5 * np.log(v / (v + tau2)) + z**2 * tau2 / (2.0 * v * (v + tau2))
        # Confidence sequence: the differences theta with Lambda(theta) < 1 / alpha.
        half = np.sqrt(
            v * (v + tau2) / tau2 * (2.0 * math.log(1.0 / alpha) + np.log((v + tau2) / v))
        )
    log_lr = np.where(ready, log_lr, 0.0)
    p_raw = np.minimum(1.0, np.exp(-log_lr))
    p_values = np.minimum.accumulate(p_raw)
    low = np.where(ready, z - half, -np.inf)
    high = np.where(ready, z + half, np.inf)
    ci_low = np.maximum.accumulate(low)
    ci_high = np.minimum.accumulate(high)
    ci_low = np.where(np.isfinite(ci_low), ci_low, np.nan)
    ci_high = np.where(np.isfinite(ci_high), ci_high, np.nan)
    return MsprtResult(
        p_values=p_values,
        ci_low=ci_low,
        ci_high=ci_high,
        diffs=np.where(ready, z, np.nan),
        alpha=alpha,
    )


def msprt_pvalues(
    a_stream: Iterable[ArrayLike],
    b_stream: Iterable[ArrayLike],
    tau2: float,
    *,
    sigma2: float | tuple[float, float] | None = None,
) -> FloatArray:
    """Always-valid p-values over looks, monotone non-increasing (see :func:`msprt`).

    Parameters
    ----------
    a_stream, b_stream : sequence of array_like
        New observations per look for control and treatment.
    tau2 : float
        Mixture variance.
    sigma2 : float, (float, float) or None, optional
        Known per-user variance; None plugs in sample variances.

    Returns
    -------
    ndarray
        One p-value per look.
    """
    return msprt(a_stream, b_stream, tau2, sigma2=sigma2).p_values


def guardrail_verdict(
    estimates: Mapping[str, Estimate],
    *,
    directions: Mapping[str, Direction],
    tolerance: float | Mapping[str, float] = 0.0,
    relative: bool = True,
) -> Verdict:
    """Judge guardrail metrics: did the treatment harm any beyond the tolerance?

    For each guardrail the harm is the difference oriented so that positive is bad (``diff``
    for ``increase_bad``, ``-diff`` for ``decrease_bad``), with its confidence interval.

    - fail: the whole interval of harm lies above the tolerance (confidently too harmful);
    - pass: the whole interval lies at or below the tolerance (confidently acceptable);
    - inconclusive: the interval straddles the tolerance, or the estimate is missing.

    The overall status is ``fail`` if any guardrail fails, else ``inconclusive`` if any is,
    else ``pass``.

    Parameters
    ----------
    estimates : Mapping[str, Estimate]
        Estimate per metric; metrics without a direction are not guardrails and are ignored.
    directions : Mapping[str, {'increase_bad', 'decrease_bad'}]
        The guardrail metrics and which way is harmful.
    tolerance : float or Mapping[str, float], optional
        Acceptable harm, ``>= 0``: a fraction of the control mean when ``relative`` (0.01 is
        1 %), else in the metric's units. A mapping gives one per metric (missing ones: 0).
    relative : bool, optional
        Whether tolerances are relative to the control mean.

    Returns
    -------
    Verdict
        Status and one reason per guardrail.

    Raises
    ------
    StatsInputError
        On an unknown direction or a negative tolerance.
    """
    valid = ("increase_bad", "decrease_bad")
    reasons: list[str] = []
    outcomes: list[VerdictStatus] = []
    for metric, direction in directions.items():
        if direction not in valid:
            msg = f"guardrail {metric!r}: unknown direction {direction!r}; valid: {list(valid)}"
            raise StatsInputError(msg)
        tol = tolerance.get(metric, 0.0) if isinstance(tolerance, Mapping) else tolerance
        if tol < 0.0:
            msg = f"guardrail {metric!r}: tolerance must be >= 0, got {tol}"
            raise StatsInputError(msg)
        est = estimates.get(metric)
        if est is None:
            outcomes.append("inconclusive")
            reasons.append(f"{metric}: no estimate")
            continue
        sign = 1.0 if direction == "increase_bad" else -1.0
        harm_low, harm_high = sorted((sign * est.ci_low, sign * est.ci_high))
        unit = ""
        if relative:
            base = abs(est.mean_a)
            if not base > 0.0:
                outcomes.append("inconclusive")
                reasons.append(f"{metric}: control mean is {est.mean_a}, relative harm undefined")
                continue
            harm_low, harm_high = harm_low / base, harm_high / base
            unit = " (relative)"
        span = f"harm CI [{harm_low:.4g}, {harm_high:.4g}]{unit} vs tolerance {tol:.4g}"
        if harm_low > tol:
            outcomes.append("fail")
            reasons.append(f"{metric}: fail, {span}")
        elif harm_high <= tol:
            outcomes.append("pass")
            reasons.append(f"{metric}: pass, {span}")
        else:
            outcomes.append("inconclusive")
            reasons.append(f"{metric}: inconclusive, {span}")
    status: VerdictStatus
    if "fail" in outcomes:
        status = "fail"
    elif "inconclusive" in outcomes:
        status = "inconclusive"
    else:
        status = "pass"
    logger.info("guardrail verdict status=%s metrics=%d", status, len(outcomes))
    return Verdict(status=status, reasons=reasons)
