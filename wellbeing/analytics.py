"""Long-term satisfaction analytics: DuckDB views over the survey and session tables, and
named reports.

Views (``CREATE OR REPLACE``, so analysts can query them with any DuckDB client):

``wb_answers``
    Every closed survey card with ``weight = 1 / (inclusion_probability x
    response_propensity)`` (answers stand for everyone asked and everyone sampled), the
    answer's ``week``, the user's signup ``cohort`` (month) and teen flag.
``wb_sessions``
    Every session with its imputed (``predicted``) and, where asked, ``observed`` satisfaction,
    minutes, ``long`` (in the top quarter of session lengths, so the definition fits any
    catalogue), ``regret`` (a long session ending with a see-less or an abrupt exit), the
    user's ``cohort``, ``steering`` (a mood was active) and experiment ``arms`` (JSON).

Named reports (:data:`REPORTS`) are SQL over those views; :func:`run_report` returns a polars
frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from storage.store import Store

logger = logging.getLogger(__name__)

LONG_SESSION_QUANTILE = 0.75

# The views and the reports are written in SQL that DuckDB and PostgreSQL both run, but for
# by_experiment_arm, which carries its PostgreSQL statement beside it.
VIEWS: tuple[str, ...] = (
    """CREATE OR REPLACE VIEW wb_answers AS
    SELECT p.survey_id, p.user_id, p.question_key, p.kind, p.stratum, p.status, p.source,
           p.answer, p.shown_at, p.inclusion_probability, p.response_propensity,
           date_trunc('week', p.shown_at) AS week,
           substr(CAST(date_trunc('month', u.created_at) AS VARCHAR), 1, 7) AS cohort,
           coalesce(u.is_teen, FALSE) AS is_teen,
           1.0 / greatest(p.inclusion_probability * coalesce(p.response_propensity, 1.0), 1e-4)
               AS weight
    FROM survey_prompts p LEFT JOIN users u USING (user_id)
    WHERE p.status <> 'shown'""",
    f"""CREATE OR REPLACE VIEW wb_sessions AS
    WITH cut AS (SELECT percentile_cont({LONG_SESSION_QUANTILE}) WITHIN GROUP (ORDER BY minutes)
                        AS long_min
                 FROM session_satisfaction)
    SELECT s.*, date_trunc('week', s.session_start) AS week,
           substr(CAST(date_trunc('month', u.created_at) AS VARCHAR), 1, 7) AS cohort,
           coalesce(u.is_teen, FALSE) AS is_teen,
           s.minutes >= cut.long_min AS long,
           (s.minutes >= cut.long_min AND (s.n_see_less > 0 OR s.abrupt_exit)) AS regret,
           EXISTS (SELECT 1 FROM moods m WHERE m.user_id = s.user_id
                     AND m.created_at <= s.session_end
                     AND coalesce(m.deleted_at, m.expires_at, TIMESTAMP '9999-01-01')
                         >= s.session_start) AS steering,
           s.experiments AS arms
    FROM session_satisfaction s CROSS JOIN cut LEFT JOIN users u USING (user_id)""",  # noqa: S608
)


@dataclass(frozen=True)
class Report:
    """A named report: what it shows and its SQL (``postgres_sql`` beside it where the
    dialects differ)."""

    name: str
    title: str
    description: str
    sql: str
    #: The PostgreSQL statement where DuckDB's differs (None: ``sql`` runs on both).
    postgres_sql: str | None = None


_IN_MOMENT = "kind = 'in_moment' AND status = 'answered'"

REPORTS: dict[str, Report] = {
    r.name: r
    for r in (
        Report(
            "weekly_satisfaction_by_cohort",
            "Weekly satisfaction by signup cohort",
            "Mean in-the-moment answer (1-5) per week and signup month, weighted by "
            "1/(inclusion x response propensity); naive mean and imputed mean beside it.",
            f"""SELECT a.week, a.cohort,
                   sum(a.answer * a.weight) / sum(a.weight) AS weighted_mean,
                   avg(a.answer) AS naive_mean, count(*) AS answers,
                   (SELECT avg(s.predicted) FROM wb_sessions s
                     WHERE s.week = a.week AND s.cohort = a.cohort) AS imputed_mean
            FROM wb_answers a WHERE {_IN_MOMENT}
            GROUP BY a.week, a.cohort ORDER BY a.week, a.cohort""",  # noqa: S608
        ),
        Report(
            "life_better_over_time",
            "Share saying life is better",
            "Share of periodic answers 'a bit' or 'much better' (4-5) per week, weighted and "
            "naive, with the share saying worse (1-2).",
            """SELECT week,
                   sum(weight * (answer >= 4)::INT) / sum(weight) AS weighted_share_better,
                   avg((answer >= 4)::INT) AS naive_share_better,
                   sum(weight * (answer <= 2)::INT) / sum(weight) AS weighted_share_worse,
                   count(*) AS answers
            FROM wb_answers WHERE kind = 'periodic' AND status = 'answered'
            GROUP BY week ORDER BY week""",
        ),
        Report(
            "time_spent_vs_satisfaction",
            "Time spent vs satisfaction",
            "Sessions in five equal-count bins of length: imputed satisfaction of all "
            "sessions and the observed answers of those asked.",
            """WITH b AS (SELECT *, ntile(5) OVER (ORDER BY minutes) AS bin FROM wb_sessions)
            SELECT bin, min(minutes) AS min_minutes, max(minutes) AS max_minutes,
                   avg(minutes) AS mean_minutes,
                   avg(predicted) AS imputed_mean, avg(observed) AS observed_mean,
                   count(*) AS sessions, count(observed) AS answered
            FROM b GROUP BY bin ORDER BY bin""",
        ),
        Report(
            "regret_proxy",
            "Regret proxy",
            "Share of long sessions (top quarter by minutes) that end with a 'see less' or an "
            "abrupt exit, per week and for teens vs adults, with their imputed satisfaction.",
            """SELECT week, is_teen,
                   avg(regret::INT) FILTER (WHERE long) AS regret_share_long,
                   count(*) FILTER (WHERE long) AS long_sessions,
                   avg(predicted) FILTER (WHERE regret) AS imputed_regret,
                   avg(predicted) FILTER (WHERE NOT regret) AS imputed_no_regret
            FROM wb_sessions GROUP BY week, is_teen ORDER BY week, is_teen""",
        ),
        Report(
            "by_steering_use",
            "Satisfaction by steering use",
            "Sessions with a mood active vs without: imputed and observed satisfaction, "
            "minutes and regret.",
            """SELECT steering, count(*) AS sessions, avg(predicted) AS imputed_mean,
                   avg(observed) AS observed_mean, avg(minutes) AS mean_minutes,
                   avg(regret::INT) AS regret_share
            FROM wb_sessions GROUP BY steering ORDER BY steering""",
        ),
        Report(
            "by_experiment_arm",
            "Satisfaction by experiment arm",
            "Sessions by the experiment arms logged on their impressions ('none' outside any "
            "experiment): imputed and observed satisfaction, minutes, regret.",
            """WITH arms AS (
                SELECT s.*, unnest(CASE WHEN s.arms IS NULL THEN ['none']
                                        ELSE json_keys(s.arms) END) AS experiment
                FROM wb_sessions s)
            SELECT experiment,
                   CASE WHEN arms IS NULL THEN 'none'
                        ELSE json_extract_string(arms, '$."' || experiment || '"') END AS arm,
                   count(*) AS sessions, avg(predicted) AS imputed_mean,
                   avg(observed) AS observed_mean, avg(minutes) AS mean_minutes,
                   avg(regret::INT) AS regret_share
            FROM arms GROUP BY ALL ORDER BY experiment, arm""",
            # DuckDB's json_keys and list literal have no PostgreSQL spelling in common.
            postgres_sql="""WITH arms AS (
                SELECT s.*, k.experiment
                FROM wb_sessions s CROSS JOIN LATERAL (
                    SELECT 'none' AS experiment WHERE s.arms IS NULL
                    UNION ALL
                    SELECT json_object_keys(s.arms::json) WHERE s.arms IS NOT NULL) k)
            SELECT experiment,
                   CASE WHEN arms IS NULL THEN 'none' ELSE arms::json ->> experiment END AS arm,
                   count(*) AS sessions, avg(predicted) AS imputed_mean,
                   avg(observed) AS observed_mean, avg(minutes) AS mean_minutes,
                   avg(regret::INT) AS regret_share
            FROM arms GROUP BY 1, 2 ORDER BY experiment, arm""",
        ),
    )
}


class UnknownReportError(KeyError):
    """A report name that is not in :data:`REPORTS`."""

    def __str__(self) -> str:
        return str(self.args[0])


def create_views(store: Store) -> None:
    """Create (or replace) the analytics views in the store."""
    with store.write() as cur:
        for sql in VIEWS:
            cur.execute(sql)


def run_report(store: Store, name: str) -> pl.DataFrame:
    """Run one named report (views are created first).

    Raises
    ------
    UnknownReportError
        ``name`` is not a report; the message lists the valid names.
    """
    report = REPORTS.get(name)
    if report is None:
        msg = f"unknown report {name!r}; valid: {', '.join(REPORTS)}"
        raise UnknownReportError(msg)
    if not store.read_only:
        create_views(store)
    sql = report.postgres_sql if store.dialect == "postgres" and report.postgres_sql else report.sql
    return store.query(sql)
