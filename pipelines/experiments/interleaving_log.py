"""Read an interleaving experiment from the impression log: which ranker won more pages.

:class:`~pipelines.experiments.selectors.interleaving.InterleavingSelector` logs, on each
impression of an interleaved page, the page's teams (``_interleaving`` in the ``experiments`` JSON:
the item ids ranker A and ranker B contributed). A slot is *credited* when the same user long-viewed
(``watch_frac >= 0.6``) or liked its clip within ``reward_window_s`` after the impression (the
same reward as :mod:`~pipelines.experiments.ope_log`); the ranker with more credited slots wins
the page (:func:`~pipelines.experiments.interleaving.interleaving_credit`), and a sign test over
the pages (:func:`~pipelines.experiments.interleaving.interleaving_test`) says whether one
ranker wins more often. Slots filled by exploration (when an arm also explores) belong to
neither team and are not credited, even when the explored clip was also on a team's list;
exploration moves clips away from their team-draft positions, so interleaving experiments are
best run with exploration off. Pages without any credited slot are ties.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import polars as pl

from pipelines.experiments.definitions import Experiment
from pipelines.experiments.errors import StatsInputError
from pipelines.experiments.interleaving import Team, interleaving_credit, interleaving_test
from pipelines.experiments.ope_log import slot_reward_sql
from pipelines.experiments.selectors.exploring import EXPLORATION_KEY
from pipelines.experiments.selectors.interleaving import INTERLEAVING_KEY
from ranking.state import LONG_VIEW_FRACTION
from storage.store import Store, time_window

logger = logging.getLogger(__name__)


def interleaved_slots(
    store: Store,
    experiment: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    reward_window_s: float = 1800.0,
) -> pl.DataFrame:
    """One row per impression of a page interleaved for ``experiment``, with team and reward.

    Parameters
    ----------
    store : Store
        Store with the event log.
    experiment : str
        The interleaving experiment's name.
    since, until : datetime or None, optional
        Impressions with ``since <= ts < until`` (naive UTC).
    reward_window_s : float, optional
        A long view or like counts within this many seconds after the impression.

    Returns
    -------
    pl.DataFrame
        ``request_id, user_id, item_id, position, ts, team`` (``a``, ``b`` or null for an
        explored slot) and ``reward`` (0/1), in page order.
    """
    if not reward_window_s > 0.0:
        msg = f"reward_window_s must be > 0, got {reward_window_s}"
        raise StatsInputError(msg)
    key = f'$."{INTERLEAVING_KEY}"'
    explore = f'$."{EXPLORATION_KEY}"'
    where = [
        "event_type = 'impression'",
        "experiments IS NOT NULL",
        f"json_extract_string(experiments, '{key}.experiment') = ?",
    ]
    window, window_params = time_window(since, until)
    where += window
    params: list[Any] = [experiment, *window_params]
    sql = f"""
        WITH imp AS (
            SELECT event_id, request_id, user_id, item_id, position, ts,
                   CASE WHEN coalesce(list_contains(CAST(json_extract(experiments,
                                 '{explore}.explored') AS BIGINT[]), item_id), false) THEN NULL
                        WHEN list_contains(CAST(json_extract(experiments, '{key}.team_a')
                                                AS BIGINT[]), item_id) THEN 'a'
                        WHEN list_contains(CAST(json_extract(experiments, '{key}.team_b')
                                                AS BIGINT[]), item_id) THEN 'b'
                   END AS team
            FROM events WHERE {" AND ".join(where)}
        )
    {
        slot_reward_sql(
            "imp.request_id, imp.user_id, imp.item_id, imp.position, imp.ts, imp.team",
            "imp.request_id, imp.position",
        )
    }"""  # noqa: S608
    params.append(round(reward_window_s * 1e6))
    return store.query(sql, params)


def interleaving_report(
    store: Store,
    experiment: Experiment,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    reward_window_s: float = 1800.0,
    alpha: float = 0.05,
) -> dict[str, Any] | None:
    """Wins, ties and losses of ranker A vs ranker B over the logged interleaved pages.

    Parameters
    ----------
    store : Store
        Store with the event log.
    experiment : Experiment
        An interleaving experiment (``interleave`` set); others give None.
    since, until, reward_window_s : optional
        As in :func:`interleaved_slots`.
    alpha : float, optional
        Significance level of the verdict.

    Returns
    -------
    dict or None
        JSON-able: ``a`` / ``b`` (arm names), ``pages``, ``pages_with_credit``, ``wins_a``,
        ``wins_b``, ``ties``, ``preference_b`` (``(wins_b + ties / 2) / pages - 0.5``),
        ``p_value`` (two-sided sign test over decided pages), ``winner`` (the arm name when
        ``p_value < alpha``, else None) and credited slots per team. ``message`` when no page
        was logged yet.
    """
    if experiment.interleave is None:
        return None
    name_a, name_b = experiment.interleave
    since = since or _naive(experiment.start)
    until = until or _naive(experiment.stop)
    slots = interleaved_slots(
        store, experiment.name, since=since, until=until, reward_window_s=reward_window_s
    )
    out: dict[str, Any] = {
        "a": name_a,
        "b": name_b,
        "credit": (
            f"long view (watch_frac >= {LONG_VIEW_FRACTION}) or like within "
            f"{reward_window_s:g} s of the impression"
        ),
        "pages": 0,
    }
    if slots.height == 0:
        out["message"] = "no interleaved pages logged yet"
        return out
    outcomes = []
    with_credit = 0
    for page in slots.partition_by("request_id", maintain_order=True):
        teamed = page.filter(pl.col("team").is_not_null())
        teams: list[Team] = teamed["team"].to_list()
        clicked = [i for i, r in enumerate(teamed["reward"].to_list()) if r]
        with_credit += bool(clicked)
        outcomes.append(interleaving_credit(teams, clicked))
    res = interleaving_test(outcomes)
    credited = slots.filter(pl.col("reward") == 1)
    out.update(asdict(res))
    out.update(
        {
            "pages": res.n,
            "pages_with_credit": with_credit,
            "users": int(slots["user_id"].n_unique()),
            "slots": {"a": _count(slots, "a"), "b": _count(slots, "b")},
            "credited_slots": {"a": _count(credited, "a"), "b": _count(credited, "b")},
            "winner": (name_a if res.wins_a > res.wins_b else name_b)
            if res.p_value < alpha
            else None,
            "alpha": alpha,
        }
    )
    return out


def _count(df: pl.DataFrame, team: str) -> int:
    return int(df.filter(pl.col("team") == team).height)


def _naive(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
