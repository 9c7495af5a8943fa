"""Off-policy estimates read from the impression log of the exploring home feed.

The logging policy is :class:`~pipelines.experiments.selectors.exploring.ExploringSelector`:
top-down, each slot keeps the ranker's pick with probability ``1 - rate`` or serves a clip drawn
uniformly from the ``m - 1`` other clips left in the exploration pool. It logs, per served slot, the
propensity of the served clip given the slots above (``1 - rate``, ``rate / (m - 1)``, or 1
when no other clip was left) and, per page, the rate and which clips were explored (the
``_exploration`` entry of the impression's ``experiments`` JSON).

What is estimated (one record = one served slot of a page served with exploration on):

- **context** ``x``: the user, the request and the slots above (the pool left);
- **action**: the clip served in the slot, either the ranker's pick or an explored clip;
- **reward**: 1 when the same user long-viewed (``watch_frac >= 0.6``) or liked the same clip
  within ``reward_window_s`` after the impression, else 0;
- **target policy** ``pi_t`` (``target_rate = t``): the same selector with exploration rate
  ``t``: the ranker's pick with probability ``1 - t``, each other pool clip with
  ``t / (m - 1)``. ``t = 0`` is *the same ranker without exploration* (greedy);
  ``t = 1`` is *a uniformly drawn pool clip other than the ranker's pick*.

So each estimate is the mean reward per served slot the target policy would get in the logged
slot contexts. It is a slot-level estimate: it assumes a slot's reward depends on the clip and
its context, not on what the target policy would have shown in the other slots (for the greedy
target the page only differs from the logged one below an explored slot). Pages served with
rate 0 carry no exploration and are left out (no support for any other action), and so are
interleaved pages (their ranker's pick comes from two rankers; see
:mod:`~pipelines.experiments.interleaving_log`).

IPS and SNIPS are :func:`~pipelines.experiments.off_policy.ips_estimate` /
:func:`~pipelines.experiments.off_policy.snips_estimate`. The doubly robust estimate uses a
small reward model ``q(position, ranker's pick or explored)`` (per-position means shrunk to
the per-kind mean), cross-fitted over two folds of users, so a record is never scored by a
model fitted on itself.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from pipelines.experiments.errors import StatsInputError
from pipelines.experiments.off_policy import (
    OffPolicyEstimate,
    doubly_robust_estimate,
    ips_estimate,
    snips_estimate,
)
from pipelines.experiments.selectors.exploring import EXPLORATION_KEY
from pipelines.experiments.selectors.interleaving import INTERLEAVING_KEY
from ranking.state import LONG_VIEW_FRACTION
from storage.store import Store, time_window

logger = logging.getLogger(__name__)

#: Targets reported by default: name -> exploration rate of the target policy.
DEFAULT_TARGETS: dict[str, float] = {"greedy": 0.0, "explore_only": 1.0}
TARGET_DESCRIPTIONS: dict[str, str] = {
    "greedy": "the same ranker without exploration (the ranker's pick in every slot)",
    "explore_only": "a uniformly drawn pool clip other than the ranker's pick in every slot",
}
#: Shrinkage (pseudo-records) of a position's mean toward its kind's mean in the reward model.
_SHRINK = 10.0
#: A logged propensity within this of its expected value counts as consistent.
_TOL = 1e-9


def slot_reward_sql(columns: str, order_by: str) -> str:
    """The query that credits served slots (a CTE ``imp`` with ``user_id, item_id, ts``): each
    slot's ``reward`` is 1 when the same user liked or long-viewed (watch fraction >=
    ``LONG_VIEW_FRACTION``) the same clip within the window, its one ``?`` parameter in
    microseconds. Off-policy estimates and interleaving credit share this definition."""
    return f"""
        SELECT {columns},
               CAST(count(e.event_id) > 0 AS INTEGER) AS reward
        FROM imp LEFT JOIN events e
          ON e.user_id = imp.user_id AND e.item_id = imp.item_id
         AND e.ts >= imp.ts AND e.ts < imp.ts + to_microseconds(CAST(? AS BIGINT))
         AND (e.event_type = 'like'
              OR (e.event_type = 'view' AND coalesce(e.watch_frac, 0) >= {LONG_VIEW_FRACTION}))
        GROUP BY ALL
        ORDER BY {order_by}
    """  # noqa: S608


def logged_slots(
    store: Store,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    reward_window_s: float = 1800.0,
    experiment: str | None = None,
    arm: str | None = None,
) -> pl.DataFrame:
    """One row per impression served with exploration on, with its reward.

    Parameters
    ----------
    store : Store
        Store with the event log.
    since, until : datetime or None, optional
        Impressions with ``since <= ts < until`` (naive UTC); unbounded when None.
    reward_window_s : float, optional
        A long view or like counts as the impression's reward within this many seconds.
    experiment, arm : str or None, optional
        Keep the impressions logged in this experiment (and arm).

    Returns
    -------
    pl.DataFrame
        ``request_id, user_id, item_id, position, ts, propensity, rate, explored, reward``.

    Raises
    ------
    StatsInputError
        On ``reward_window_s <= 0`` or an arm without an experiment.
    """
    if not reward_window_s > 0.0:
        msg = f"reward_window_s must be > 0, got {reward_window_s}"
        raise StatsInputError(msg)
    if arm is not None and experiment is None:
        msg = "an arm filter needs the experiment it belongs to"
        raise StatsInputError(msg)
    key = f'$."{EXPLORATION_KEY}"'
    where = [
        "event_type = 'impression'",
        "experiments IS NOT NULL",
        f"json_extract(experiments, '{key}') IS NOT NULL",
        # Interleaved pages are left out: their "ranker" is a mixture of two.
        f"json_extract(experiments, '$.\"{INTERLEAVING_KEY}\"') IS NULL",
        "propensity IS NOT NULL",
    ]
    window, params = time_window(since, until)
    where += window
    if experiment is not None:
        path = '$."' + experiment.replace('"', '\\"') + '"'
        if arm is None:
            where.append("json_extract_string(experiments, ?) IS NOT NULL")
            params.append(path)
        else:
            where.append("json_extract_string(experiments, ?) = ?")
            params.extend([path, arm])
    sql = f"""
        WITH imp AS (
            SELECT event_id, request_id, user_id, item_id, position, ts, propensity,
                   CAST(json_extract(experiments, '{key}.rate') AS DOUBLE) AS rate,
                   coalesce(list_contains(
                       CAST(json_extract(experiments, '{key}.explored') AS BIGINT[]), item_id
                   ), false) AS explored
            FROM events WHERE {" AND ".join(where)}
        )
    {
        slot_reward_sql(
            "imp.request_id, imp.user_id, imp.item_id, imp.position, imp.ts, "
            "imp.propensity, imp.rate, imp.explored",
            "imp.ts, imp.request_id, imp.position",
        )
    }"""  # noqa: S608
    params.append(round(reward_window_s * 1e6))
    return store.query(sql, params)


def target_probability(slots: pl.DataFrame, target_rate: float | None) -> np.ndarray:
    """Probability the target policy gives each logged clip in its slot context.

    Parameters
    ----------
    slots : pl.DataFrame
        From :func:`logged_slots` (``propensity``, ``rate``, ``explored``).
    target_rate : float or None
        Exploration rate of the target policy; None is the logging policy itself (each
        page's own rate), whose probabilities equal the logged propensities.

    Returns
    -------
    numpy.ndarray
        One probability per row.
    """
    p0 = slots["propensity"].to_numpy().astype(np.float64)
    if target_rate is None:
        return p0.copy()
    if not 0.0 <= target_rate <= 1.0:
        msg = f"target_rate must lie in [0, 1], got {target_rate}"
        raise StatsInputError(msg)
    rate = slots["rate"].to_numpy().astype(np.float64)
    explored = slots["explored"].to_numpy().astype(bool)
    alone = ~explored & (p0 >= 1.0 - _TOL)  # no other clip was left: every policy serves it
    # An explored clip: p0 = rate / (m - 1), so the target's t / (m - 1) is t * p0 / rate.
    with np.errstate(divide="ignore", invalid="ignore"):
        explore_pi = np.where(rate > 0.0, target_rate * p0 / np.maximum(rate, _TOL), 0.0)
    pi = np.where(explored, explore_pi, np.where(alone, 1.0, 1.0 - target_rate))
    return np.clip(pi, 0.0, 1.0)


def _reward_model(slots: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fitted ``q(position, pick)`` and ``q(position, explored)`` per row."""
    df = slots.select(
        pl.col("position").cast(pl.Int64),
        pl.col("explored"),
        pl.col("reward").cast(pl.Float64),
        (pl.col("user_id") % 2).alias("fold"),
    ).with_row_index("row")
    overall = float(df["reward"].mean() or 0.0)  # type: ignore[arg-type]
    q_pick = np.full(df.height, overall)
    q_expl = np.full(df.height, overall)
    for fold in (0, 1):
        train = df.filter(pl.col("fold") != fold)
        test = df.filter(pl.col("fold") == fold)
        if test.height == 0:
            continue
        if train.height == 0:  # one fold only (one user parity): fit on all, said in the log
            train = df
        base = float(train["reward"].mean() or overall)  # type: ignore[arg-type]
        for flag, out in ((False, q_pick), (True, q_expl)):
            part = train.filter(pl.col("explored") == flag)
            kind_mean = (
                (float(part["reward"].sum()) + _SHRINK * base) / (part.height + _SHRINK)
                if part.height
                else base
            )
            shrunk = (pl.col("reward").sum() + _SHRINK * kind_mean) / (pl.len() + _SHRINK)
            per_pos = part.group_by("position").agg(shrunk.alias("q"))
            joined = test.select("row", "position").join(per_pos, on="position", how="left")
            rows = joined["row"].to_numpy()
            out[rows] = joined["q"].fill_null(kind_mean).to_numpy()
    return q_pick, q_expl


def estimate_target(
    slots: pl.DataFrame,
    target_rate: float | None,
    *,
    alpha: float = 0.05,
    max_weight: float | None = None,
) -> dict[str, OffPolicyEstimate]:
    """IPS, SNIPS and doubly robust estimates of one target policy on logged slots.

    Parameters
    ----------
    slots : pl.DataFrame
        From :func:`logged_slots`, at least 2 rows.
    target_rate : float or None
        Target exploration rate (see :func:`target_probability`).
    alpha : float, optional
        1 - confidence level of the (analytic) intervals.
    max_weight : float or None, optional
        Clip importance weights (biased, lower variance); None keeps them exact.

    Returns
    -------
    dict[str, OffPolicyEstimate]
        Keyed ``ips``, ``snips``, ``dr``; SNIPS is left out when no record has weight.
    """
    r = slots["reward"].to_numpy().astype(np.float64)
    p0 = slots["propensity"].to_numpy().astype(np.float64)
    pi = target_probability(slots, target_rate)
    q_pick, q_expl = _reward_model(slots)
    explored = slots["explored"].to_numpy().astype(bool)
    q_logged = np.where(explored, q_expl, q_pick)
    alone = ~explored & (p0 >= 1.0 - _TOL)
    if target_rate is None:
        pick_mass = np.where(alone, 1.0, 1.0 - slots["rate"].to_numpy().astype(np.float64))
    else:
        pick_mass = np.where(alone, 1.0, 1.0 - target_rate)
    q_target = pick_mass * q_pick + (1.0 - pick_mass) * q_expl
    kw: dict[str, Any] = {"alpha": alpha, "max_weight": max_weight}
    out = {"ips": ips_estimate(r, p0, pi, **kw)}
    if float((pi / p0).sum()) > 0.0:
        out["snips"] = snips_estimate(r, p0, pi, **kw)
    out["dr"] = doubly_robust_estimate(r, p0, pi, q_logged, q_target, **kw)
    return out


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _estimate_json(est: OffPolicyEstimate) -> dict[str, Any]:
    return {k: (_finite(v) if isinstance(v, float) else v) for k, v in asdict(est).items()}


def off_policy_report(
    store: Store,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    reward_window_s: float = 1800.0,
    targets: dict[str, float] | None = None,
    experiment: str | None = None,
    arm: str | None = None,
    alpha: float = 0.05,
    max_weight: float | None = None,
) -> dict[str, Any]:
    """Off-policy estimates of target policies from the logged exploring pages.

    Parameters
    ----------
    store : Store
        Store with the event log.
    since, until, reward_window_s, experiment, arm : optional
        As in :func:`logged_slots`.
    targets : dict[str, float] or None, optional
        Target name -> exploration rate (default :data:`DEFAULT_TARGETS`: greedy and
        explore-only).
    alpha : float, optional
        1 - confidence level.
    max_weight : float or None, optional
        Weight clipping (see :func:`estimate_target`).

    Returns
    -------
    dict
        JSON-able: counts (impressions, pages, users, explored slots, exploration rates), the
        logging policy's own mean reward with its interval (``logged``), and per target its
        description, rate and ``ips`` / ``snips`` / ``dr`` estimates (value, interval, se,
        effective sample size, largest weight). ``message`` says why there are no estimates
        when fewer than 2 exploring impressions were found.
    """
    wanted = dict(DEFAULT_TARGETS if targets is None else targets)
    for name, t in wanted.items():
        if not 0.0 <= t <= 1.0:
            msg = f"target {name!r}: exploration rate must lie in [0, 1], got {t}"
            raise StatsInputError(msg)
    slots = logged_slots(
        store,
        since=since,
        until=until,
        reward_window_s=reward_window_s,
        experiment=experiment,
        arm=arm,
    )
    report: dict[str, Any] = {
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "experiment": experiment,
        "arm": arm,
        "reward": (
            f"1 if the user long-viewed (watch_frac >= {LONG_VIEW_FRACTION}) or liked the "
            f"clip within {reward_window_s:g} s of the impression, else 0"
        ),
        "unit": "one served slot of a page served with exploration on",
        "impressions": slots.height,
        "pages": int(slots["request_id"].n_unique()) if slots.height else 0,
        "users": int(slots["user_id"].n_unique()) if slots.height else 0,
        "explored_slots": int(slots["explored"].sum()) if slots.height else 0,
        "rates": sorted({float(r) for r in slots["rate"].unique().to_list()})[:20]
        if slots.height
        else [],
        "logged": None,
        "targets": {},
    }
    if slots.height < 2:
        report["message"] = (
            "fewer than 2 impressions served with exploration on; set "
            "STEERFEED_EXPERIMENTS_EXPLORATION_RATE or an arm's exploration_rate > 0"
        )
        return report
    report["inconsistent_propensities"] = _inconsistent(slots)
    if bool((slots["rate"] >= 1.0).any()) and any(t < 1.0 for t in wanted.values()):
        report["warning"] = "pages served with rate 1 never show the ranker's pick: no support"
    logged = ips_estimate(
        slots["reward"].to_numpy().astype(np.float64),
        np.ones(slots.height),
        np.ones(slots.height),
        alpha=alpha,
    )
    report["logged"] = _estimate_json(logged)
    for name, t in wanted.items():
        ests = estimate_target(slots, t, alpha=alpha, max_weight=max_weight)
        report["targets"][name] = {
            "target_rate": t,
            "description": TARGET_DESCRIPTIONS.get(name, f"the same selector at rate {t:g}"),
            **{k: _estimate_json(v) for k, v in ests.items()},
        }
    logger.info(
        "off-policy report impressions=%d pages=%d explored=%d targets=%s",
        report["impressions"],
        report["pages"],
        report["explored_slots"],
        ",".join(wanted),
    )
    return dict(json.loads(json.dumps(report, default=str)))


def _inconsistent(slots: pl.DataFrame) -> int:
    """Rows whose logged propensity does not fit the exploration formula (logged as a warning).

    The ranker's pick must have ``1 - rate`` (or 1 when alone); an explored clip
    ``rate / (m - 1)`` for a whole ``m - 1 >= 1``.
    """
    p0 = slots["propensity"].to_numpy().astype(np.float64)
    rate = slots["rate"].to_numpy().astype(np.float64)
    explored = slots["explored"].to_numpy().astype(bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        others = np.where(p0 > 0.0, rate / p0, np.inf)
    ok_explored = (
        (p0 > 0.0) & np.isfinite(others) & (np.abs(others - np.round(others)) < 1e-6)
    ) & (np.round(others) >= 1)
    ok_pick = (np.abs(p0 - (1.0 - rate)) < 1e-6) | (p0 >= 1.0 - _TOL)
    bad = int(np.count_nonzero(np.where(explored, ~ok_explored, ~ok_pick)))
    if bad:
        logger.warning("off-policy log: %d of %d propensities do not fit", bad, slots.height)
    return bad
