"""Read an experiment from the store: exposure from the impression log, metrics per user,
differences with intervals, CUPED, SRM, mSPRT and the guardrail verdict.

Exposure is what the serving path logged: an impression whose ``experiments`` JSON names the
experiment puts its user in that arm from that moment on. Metrics are counted per user from
their first exposure (to ``stop`` when the experiment has one); the CUPED covariate is the
same metric over ``pre_days`` before the experiment's start (its ``start``, else its first
exposure). Users held back (arm ``_holdback``) are reported apart and left out of the SRM
check and the comparisons; a user logged in two arms (a re-salted experiment) is dropped and
counted.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import polars as pl

from pipelines.experiments.definitions import Experiment
from pipelines.experiments.errors import ExperimentError, StatsInputError
from pipelines.experiments.interleaving_log import interleaving_report
from pipelines.experiments.ope_log import off_policy_report
from pipelines.experiments.query_hydrators.experiment_arms import HOLDBACK_ARM
from pipelines.experiments.stats import (
    Direction,
    Estimate,
    cuped_diff,
    diff_in_means,
    guardrail_verdict,
    msprt,
    ratio_metric_diff,
    srm_check,
)
from storage.store import Store

logger = logging.getLogger(__name__)

MetricKind = Literal["mean", "ratio"]


@dataclass(frozen=True)
class MetricSpec:
    """How one metric is read per user.

    ``kind='mean'``: ``column`` per user, difference in means (Welch), CUPED with ``pre``
    when given. ``kind='ratio'``: ``sum(column) / sum(denominator)`` per arm (delta method).
    ``teens_only`` restricts it to teen users. ``harmful`` is the guardrail direction.
    """

    name: str
    label: str
    kind: MetricKind
    column: str
    denominator: str | None = None
    pre: str | None = None
    teens_only: bool = False
    harmful: Direction = "decrease_bad"


METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        MetricSpec("minutes", "watch minutes per user", "mean", "minutes", pre="pre_minutes"),
        MetricSpec("views", "views per user", "mean", "views", pre="pre_views"),
        MetricSpec("sessions", "sessions per user", "mean", "sessions", pre="pre_sessions"),
        MetricSpec("view_rate", "views per impression", "ratio", "views", "impressions"),
        MetricSpec("like_rate", "likes per impression", "ratio", "likes", "impressions"),
        MetricSpec(
            "satisfaction", "in-the-moment survey answer (1-5)", "ratio", "answer_sum", "answers"
        ),
        MetricSpec(
            "report_rate",
            "reports per impression",
            "ratio",
            "reports",
            "impressions",
            harmful="increase_bad",
        ),
        MetricSpec(
            "teen_minutes",
            "watch minutes per teen user",
            "mean",
            "minutes",
            pre="pre_minutes",
            teens_only=True,
            harmful="increase_bad",
        ),
    )
}
#: Guardrails used when an experiment lists none.
DEFAULT_GUARDRAILS: tuple[str, ...] = ("satisfaction", "teen_minutes", "report_rate")


class UnknownMetricError(ExperimentError, ValueError):
    """A metric name the analysis does not know."""


def check_metrics(names: list[str] | tuple[str, ...]) -> None:
    """Raise :class:`UnknownMetricError` for names not in :data:`METRICS` (listing them)."""
    bad = [n for n in names if n not in METRICS]
    if bad:
        msg = f"unknown metrics {bad}; valid: {sorted(METRICS)}"
        raise UnknownMetricError(msg)


def _naive(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


#: Columns of :func:`user_metrics`, also those of its empty frame (no one exposed yet).
USER_METRICS_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Int64(),
    "arm": pl.String(),
    "first_ts": pl.Datetime("us"),
    **{
        c: pl.Float64()
        for c in (
            "impressions",
            "views",
            "minutes",
            "likes",
            "reports",
            "sessions",
            "pre_views",
            "pre_minutes",
            "pre_sessions",
            "answer_sum",
            "answers",
        )
    },
    "is_teen": pl.Boolean(),
}


def user_metrics(
    store: Store,
    experiment: Experiment,
    *,
    pre_days: int = 14,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """One row per exposed user: arm, first exposure, metrics after it and before the start.

    Parameters
    ----------
    store : Store
        The store holding the event log (and the wellbeing survey tables).
    experiment : Experiment
        The experiment.
    pre_days : int, optional
        Length of the pre-period for the CUPED covariates.

    Returns
    -------
    tuple[pl.DataFrame, dict]
        The per-user frame and facts about the window (start, stop, dropped users).
    """
    path = '$."' + experiment.name.replace('"', '\\"') + '"'
    stop = _naive(experiment.stop)
    stop_sql = "AND ts < ?" if stop is not None else ""
    params: list[Any] = [path, path]
    if stop is not None:
        params.append(stop)
    exposures = store.query(
        f"""SELECT user_id, json_extract_string(experiments, ?) AS arm, min(ts) AS first_ts
            FROM events
            WHERE event_type = 'impression' AND experiments IS NOT NULL
              AND json_extract_string(experiments, ?) IS NOT NULL {stop_sql}
            GROUP BY ALL""",  # noqa: S608
        params,
    )
    facts: dict[str, Any] = {"switched_users": 0, "start": None, "stop": _iso(stop)}
    if exposures.height == 0:  # a new or just-started experiment: no one exposed yet
        return pl.DataFrame(schema=USER_METRICS_SCHEMA), facts
    n_arms = exposures.group_by("user_id").agg(pl.col("arm").n_unique().alias("n"))
    switched = n_arms.filter(pl.col("n") > 1)["user_id"]
    facts["switched_users"] = int(switched.len())
    exposures = exposures.filter(~pl.col("user_id").is_in(switched.implode()))
    if exposures.height == 0:  # everyone exposed was in two arms
        return pl.DataFrame(schema=USER_METRICS_SCHEMA), facts
    start = _naive(experiment.start) or exposures["first_ts"].min()
    facts["start"] = _iso(start)
    pre_from = start - timedelta(days=pre_days)  # type: ignore[operator]
    post_stop = stop_sql.replace("ts", "e.ts")
    con = store.cursor()
    try:
        con.register("exposed", exposures.to_arrow())
        post = pl.from_arrow(
            con.sql(
                f"""SELECT x.user_id,
                      count(*) FILTER (WHERE e.event_type = 'impression') AS impressions,
                      count(*) FILTER (WHERE e.event_type = 'view') AS views,
                      coalesce(sum(e.watch_s) FILTER (WHERE e.event_type = 'view'), 0) / 60.0
                          AS minutes,
                      count(*) FILTER (WHERE e.event_type = 'like') AS likes,
                      count(*) FILTER (WHERE e.event_type = 'report') AS reports,
                      count(DISTINCT e.session_id) FILTER (WHERE e.event_type = 'impression')
                          AS sessions
                    FROM exposed x JOIN events e
                      ON e.user_id = x.user_id AND e.ts >= x.first_ts {post_stop}
                    GROUP BY x.user_id""",  # noqa: S608
                params=[stop] if stop is not None else None,
            ).to_arrow_table()
        )
        pre = pl.from_arrow(
            con.sql(
                """SELECT x.user_id,
                      count(*) FILTER (WHERE e.event_type = 'view') AS pre_views,
                      coalesce(sum(e.watch_s) FILTER (WHERE e.event_type = 'view'), 0) / 60.0
                          AS pre_minutes,
                      count(DISTINCT e.session_id) FILTER (WHERE e.event_type = 'impression')
                          AS pre_sessions
                    FROM exposed x JOIN events e
                      ON e.user_id = x.user_id AND e.ts >= ? AND e.ts < ?
                    GROUP BY x.user_id""",
                params=[pre_from, start],
            ).to_arrow_table()
        )
        answers = pl.from_arrow(
            con.sql(
                f"""SELECT x.user_id, sum(s.answer) AS answer_sum, count(*) AS answers
                    FROM exposed x JOIN survey_prompts s
                      ON s.user_id = x.user_id AND s.shown_at >= x.first_ts
                    WHERE s.status = 'answered' AND s.kind = 'in_moment'
                      {stop_sql.replace("ts", "s.shown_at")}
                    GROUP BY x.user_id""",  # noqa: S608
                params=[stop] if stop is not None else None,
            ).to_arrow_table()
        )
        teens = pl.from_arrow(
            con.sql(
                "SELECT u.user_id, u.is_teen FROM users u JOIN exposed x USING (user_id)"
            ).to_arrow_table()
        )
    finally:
        con.unregister("exposed")
        con.close()
    assert isinstance(post, pl.DataFrame) and isinstance(pre, pl.DataFrame)
    assert isinstance(answers, pl.DataFrame) and isinstance(teens, pl.DataFrame)
    out = (
        exposures.join(post, on="user_id", how="left")
        .join(pre, on="user_id", how="left")
        .join(answers, on="user_id", how="left")
        .join(teens, on="user_id", how="left")
        .with_columns(pl.col("is_teen").fill_null(False))
    )
    numeric = [c for c in out.columns if c not in ("user_id", "arm", "first_ts", "is_teen")]
    out = out.with_columns([pl.col(c).cast(pl.Float64).fill_null(0.0) for c in numeric])
    return out.sort("first_ts").select(list(USER_METRICS_SCHEMA)), facts


def _estimate_json(est: Estimate) -> dict[str, Any]:
    return {k: _finite(v) for k, v in asdict(est).items()}


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def compare_metric(
    spec: MetricSpec, control: pl.DataFrame, treatment: pl.DataFrame, *, alpha: float = 0.05
) -> tuple[Estimate | None, dict[str, Any]]:
    """Estimate ``treatment - control`` for one metric; returns the estimate and its JSON.

    Too few users (fewer than two per arm, or no denominator) give ``None`` and a reason.
    """
    if spec.teens_only:
        control = control.filter(pl.col("is_teen"))
        treatment = treatment.filter(pl.col("is_teen"))
    try:
        if spec.kind == "ratio":
            assert spec.denominator is not None
            a = control.filter(pl.col(spec.denominator) > 0)
            b = treatment.filter(pl.col(spec.denominator) > 0)
            est = ratio_metric_diff(
                a[spec.column].to_numpy(),
                a[spec.denominator].to_numpy(),
                b[spec.column].to_numpy(),
                b[spec.denominator].to_numpy(),
                alpha=alpha,
            )
            return est, {"label": spec.label, "kind": spec.kind, **_estimate_json(est)}
        y_a, y_b = control[spec.column].to_numpy(), treatment[spec.column].to_numpy()
        est = diff_in_means(y_a, y_b, alpha=alpha)
        out: dict[str, Any] = {"label": spec.label, "kind": spec.kind, **_estimate_json(est)}
        if spec.pre is not None:
            x_a, x_b = control[spec.pre].to_numpy(), treatment[spec.pre].to_numpy()
            if np.var(np.concatenate([x_a, x_b])) > 0.0:
                cup = cuped_diff(y_a, x_a, y_b, x_b, alpha=alpha)
                out["cuped"] = {
                    **_estimate_json(cup.estimate),
                    "theta": _finite(cup.theta),
                    "variance_reduction": _finite(cup.variance_reduction),
                }
        return est, out
    except StatsInputError as exc:
        return None, {"label": spec.label, "kind": spec.kind, "error": str(exc)}


def _msprt_json(
    metric: str, control: pl.DataFrame, treatment: pl.DataFrame, *, looks: int, alpha: float
) -> dict[str, Any] | None:
    """Always-valid p-values over looks, users entering in order of first exposure."""
    a = control[metric].to_numpy()
    b = treatment[metric].to_numpy()
    if a.size < 4 or b.size < 4:
        return None
    k = max(1, min(looks, a.size // 2, b.size // 2))
    a_batches = np.array_split(a, k)
    b_batches = np.array_split(b, k)
    pooled_sd = float(np.std(np.concatenate([a, b]), ddof=1))
    tau2 = max((0.1 * float(np.mean(a))) ** 2, (0.05 * pooled_sd) ** 2, 1e-12)
    try:
        res = msprt(a_batches, b_batches, tau2, alpha=alpha)
    except StatsInputError:
        return None
    return {
        "metric": metric,
        "looks": k,
        "tau2": tau2,
        "p_values": [_finite(float(p)) for p in res.p_values],
        "ci_low": _finite(float(res.ci_low[-1])),
        "ci_high": _finite(float(res.ci_high[-1])),
        "rejected": res.rejected,
        "first_rejection": res.first_rejection,
    }


def analyze(
    store: Store,
    experiment: Experiment,
    *,
    metrics: tuple[str, ...] | None = None,
    alpha: float = 0.05,
    guardrail_tolerance: float = 0.05,
    pre_days: int = 14,
    looks: int = 10,
) -> dict[str, Any]:
    """Analyse an experiment from the store; returns a JSON-able report.

    Parameters
    ----------
    store : Store
        Store with the event log.
    experiment : Experiment
        The experiment to read.
    metrics : tuple[str, ...] or None, optional
        Metrics to report (default: all of :data:`METRICS`).
    alpha : float, optional
        1 - confidence level of the intervals.
    guardrail_tolerance : float, optional
        Acceptable relative harm of a guardrail metric (0.05 is 5 % of the control mean).
    pre_days : int, optional
        CUPED pre-period length.
    looks : int, optional
        Looks of the sequential (mSPRT) test on watch minutes.

    Returns
    -------
    dict
        ``arms`` (users, expected share, per-metric means), ``srm``, ``holdback``,
        ``comparisons`` (per treatment arm: metric estimates with intervals, CUPED, mSPRT,
        guardrail verdict), the window, ``off_policy`` (per arm, estimates from its pages
        served with exploration on, :mod:`~pipelines.experiments.ope_log`; None without) and
        ``interleaving`` (wins of ranker A vs B for an interleaving experiment,
        :mod:`~pipelines.experiments.interleaving_log`; None for others).

    Raises
    ------
    UnknownMetricError
        On a metric or guardrail name not in :data:`METRICS`.
    """
    names = tuple(metrics) if metrics else tuple(METRICS)
    guardrails = tuple(experiment.guardrails) or DEFAULT_GUARDRAILS
    check_metrics(names)
    check_metrics(guardrails)
    users, facts = user_metrics(store, experiment, pre_days=pre_days)
    arm_names = experiment.arm_names
    control_name = "control" if "control" in arm_names else arm_names[0]
    by_arm = {a: users.filter(pl.col("arm") == a) if users.height else users for a in arm_names}
    counts = {a: int(by_arm[a].height) for a in arm_names}
    holdback = users.filter(pl.col("arm") == HOLDBACK_ARM) if users.height else users
    srm = (
        srm_check(counts, experiment.arm_shares)
        if len(arm_names) >= 2 and sum(counts.values()) > 0
        else None
    )
    arms: list[dict[str, Any]] = []
    for a in arm_names:
        df = by_arm[a]
        means: dict[str, float | None] = {}
        for m in names:
            spec = METRICS[m]
            part = df.filter(pl.col("is_teen")) if spec.teens_only and df.height else df
            if part.height == 0:
                means[m] = None
            elif spec.kind == "ratio":
                assert spec.denominator is not None
                den = float(part[spec.denominator].sum())
                means[m] = float(part[spec.column].sum()) / den if den > 0 else None
            else:
                means[m] = float(part[spec.column].mean())  # type: ignore[arg-type]
        arms.append(
            {
                "name": a,
                "users": counts[a],
                "expected_share": experiment.arm_shares[a],
                "overrides": experiment.arm(a).overrides.as_dict(),
                "means": means,
            }
        )
    comparisons: list[dict[str, Any]] = []
    for a in arm_names:
        if a == control_name:
            continue
        estimates: dict[str, Estimate] = {}
        rows: dict[str, Any] = {}
        for m in sorted(set(names) | set(guardrails), key=list(METRICS).index):
            est, row = compare_metric(METRICS[m], by_arm[control_name], by_arm[a], alpha=alpha)
            rows[m] = row
            if est is not None:
                estimates[m] = est
        verdict = guardrail_verdict(
            estimates,
            directions={g: METRICS[g].harmful for g in guardrails},
            tolerance=guardrail_tolerance,
        )
        comparisons.append(
            {
                "arm": a,
                "control": control_name,
                "metrics": rows,
                "msprt": _msprt_json(
                    "minutes", by_arm[control_name], by_arm[a], looks=looks, alpha=alpha
                )
                if users.height
                else None,
                "guardrails": {
                    "status": verdict.status,
                    "reasons": verdict.reasons,
                    "metrics": list(guardrails),
                    "tolerance": guardrail_tolerance,
                },
            }
        )
    report = {
        "experiment": experiment.name,
        "status": experiment.status,
        "salt": experiment.salt,
        "allocation": experiment.allocation,
        "alpha": alpha,
        "window": facts,
        "exposed_users": int(sum(counts.values())),
        "arms": arms,
        "srm": None
        if srm is None
        else {"chi2": srm.chi2, "p_value": srm.p_value, "alarm": srm.alarm, "threshold": 0.001},
        "holdback": {
            "share": experiment.holdback,
            "users": int(holdback.height),
            "minutes_mean": float(holdback["minutes"].mean())  # type: ignore[arg-type]
            if holdback.height
            else None,
        },
        "comparisons": comparisons,
        "metric_labels": {m: METRICS[m].label for m in METRICS},
        "off_policy": _off_policy_by_arm(store, experiment, alpha=alpha),
        "interleaving": interleaving_report(store, experiment, alpha=alpha),
    }
    logger.info(
        "analyzed experiment=%s users=%d srm_alarm=%s",
        experiment.name,
        report["exposed_users"],
        None if srm is None else srm.alarm,
    )
    return dict(json.loads(json.dumps(report, default=_default)))


def _off_policy_by_arm(
    store: Store, experiment: Experiment, *, alpha: float
) -> dict[str, Any] | None:
    """Per arm, off-policy estimates from its pages served with exploration on (None: none).

    See :mod:`pipelines.experiments.ope_log` for what is estimated.
    """
    out: dict[str, Any] = {}
    for a in experiment.arm_names:
        rep = off_policy_report(store, experiment=experiment.name, arm=a, alpha=alpha)
        if rep["targets"]:
            out[a] = rep
    return out or None


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    msg = f"not JSON-able: {type(value).__name__}"
    raise TypeError(msg)
