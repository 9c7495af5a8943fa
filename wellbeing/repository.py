"""The wellbeing tables in the DuckDB store (migration 4): survey prompts, governor settings,
parent links, session satisfaction and satisfaction models."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from storage.store import Store, utcnow
from wellbeing.errors import SurveyError
from wellbeing.governor import to_utc
from wellbeing.surveys import QUESTIONS, SurveyDraw

logger = logging.getLogger(__name__)

SET_BY = ("user", "parent")


def naive_utc(moment: datetime) -> datetime:
    """Naive UTC, the form the store's TIMESTAMP columns hold."""
    return to_utc(moment).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class SurveyHistory:
    """When a user was last shown any survey and each periodic question."""

    last_survey_at: datetime | None
    last_periodic_at: dict[str, datetime]


@dataclass(frozen=True, slots=True)
class WeeklyActivity:
    """A user's last seven days: minutes watched and feed pages loaded; account creation."""

    minutes: float
    pages: int
    created_at: datetime | None = None


class WellbeingRepository:
    """Reads and writes the wellbeing tables.

    Parameters
    ----------
    store
        The engine's store (migration 4 applied).
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- governor settings ------------------------------------------------------------------
    def overrides(self, user_id: int) -> dict[str, dict[str, Any]]:
        """The stored overrides of a user, keyed by who set them (``'user'``, ``'parent'``)."""
        return self._overrides("WHERE user_id = ?", [user_id]).get(user_id, {})

    def all_overrides(self) -> dict[int, dict[str, dict[str, Any]]]:
        """Every user's stored overrides (users without any are absent)."""
        return self._overrides("", [])

    def _overrides(self, where: str, params: list[Any]) -> dict[int, dict[str, dict[str, Any]]]:
        df = self.store.query(
            f"SELECT user_id, set_by, overrides FROM governor_settings {where}",  # noqa: S608
            params,
        )
        out: dict[int, dict[str, dict[str, Any]]] = {}
        for r in df.iter_rows(named=True):
            out.setdefault(int(r["user_id"]), {})[str(r["set_by"])] = json.loads(
                r["overrides"] or "{}"
            )
        return out

    def save_overrides(
        self, user_id: int, set_by: str, overrides: dict[str, Any], *, updated_by: int | None
    ) -> None:
        """Replace the overrides ``set_by`` (``'user'`` or ``'parent'``) holds for a user."""
        if set_by not in SET_BY:
            msg = f"set_by must be one of {SET_BY}, got {set_by!r}"
            raise ValueError(msg)
        with self.store.write() as cur:
            cur.execute(
                "INSERT OR REPLACE INTO governor_settings "
                "(user_id, set_by, overrides, updated_by, updated_at) VALUES (?, ?, ?, ?, ?)",
                [user_id, set_by, json.dumps(overrides), updated_by, utcnow()],
            )

    # -- parent links -----------------------------------------------------------------------
    def link(self, parent_id: int, child_id: int) -> bool:
        """Link a parent account to a child; return whether the link is new."""
        with self.store.write() as cur:
            rows = cur.execute(
                "INSERT OR IGNORE INTO parent_links (parent_id, child_id) VALUES (?, ?)",
                [parent_id, child_id],
            ).fetchall()
        return bool(rows and rows[0][0])

    def unlink(self, parent_id: int, child_id: int) -> None:
        """Remove a parent link."""
        with self.store.write() as cur:
            cur.execute(
                "DELETE FROM parent_links WHERE parent_id = ? AND child_id = ?",
                [parent_id, child_id],
            )

    def children_of(self, parent_id: int) -> list[int]:
        """The children linked to a parent."""
        df = self.store.query(
            "SELECT child_id FROM parent_links WHERE parent_id = ? ORDER BY child_id", [parent_id]
        )
        return [int(x) for x in df["child_id"].to_list()]

    # -- surveys ----------------------------------------------------------------------------
    def insert_prompt(
        self,
        survey_id: str,
        draw: SurveyDraw,
        *,
        request_id: str | None,
        session_id: str | None,
        source: str = "feed",
    ) -> None:
        """Log a shown survey card with its sampling probabilities."""
        with self.store.write() as cur:
            cur.execute(
                "INSERT INTO survey_prompts (survey_id, user_id, question_key, kind, stratum, "
                "request_id, session_id, shown_at, page_probability, question_probability, "
                "inclusion_probability, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    survey_id,
                    draw.user_id,
                    draw.question_key,
                    draw.kind,
                    draw.stratum,
                    request_id,
                    session_id,
                    naive_utc(draw.drawn_at),
                    draw.page_probability,
                    draw.question_probability,
                    draw.inclusion_probability,
                    source,
                ],
            )

    def prompt(self, survey_id: str) -> dict[str, Any] | None:
        """One survey prompt as a dict, or ``None``."""
        df = self.store.query("SELECT * FROM survey_prompts WHERE survey_id = ?", [survey_id])
        return df.row(0, named=True) if df.height else None

    def respond(
        self, survey_id: str, *, status: str, answer: int | None, at: datetime
    ) -> dict[str, Any]:
        """Record an answer or a dismissal of a shown card (each card is closed once).

        Raises
        ------
        SurveyError
            The card is unknown or already closed.
        """
        with self.store.write() as cur:
            row = cur.execute(
                "SELECT status, question_key FROM survey_prompts WHERE survey_id = ?",
                [survey_id],
            ).fetchone()
            if row is None:
                msg = f"unknown survey_id {survey_id!r}"
                raise SurveyError(msg)
            if row[0] != "shown":
                msg = f"survey {survey_id} is already {row[0]}; each card is answered once"
                raise SurveyError(msg)
            if answer is not None:
                QUESTIONS[str(row[1])].validate_answer(answer)
            cur.execute(
                "UPDATE survey_prompts SET status = ?, answer = ?, responded_at = ? "
                "WHERE survey_id = ?",
                [status, answer, naive_utc(at), survey_id],
            )
        out = self.prompt(survey_id)
        assert out is not None
        return out

    def expire_prompts(self, now: datetime, window_hours: float) -> int:
        """Mark cards shown longer than ``window_hours`` ago and never closed as ``expired``."""
        cutoff = naive_utc(now) - timedelta(hours=window_hours)
        with self.store.write() as cur:
            rows = cur.execute(
                "UPDATE survey_prompts SET status = 'expired' "
                "WHERE status = 'shown' AND shown_at < ?",
                [cutoff],
            ).fetchall()
        return int(rows[0][0]) if rows else 0

    def survey_history(self, user_id: int) -> SurveyHistory:
        """When the user was last shown any survey, and each periodic question."""
        return self._survey_histories("WHERE user_id = ?", [user_id]).get(
            user_id, SurveyHistory(None, {})
        )

    def survey_histories(self) -> dict[int, SurveyHistory]:
        """:meth:`survey_history` of every user ever shown a survey (one query)."""
        return self._survey_histories("", [])

    def _survey_histories(self, where: str, params: list[Any]) -> dict[int, SurveyHistory]:
        df = self.store.query(
            "SELECT user_id, question_key, kind, max(shown_at) AS last FROM survey_prompts "  # noqa: S608
            f"{where} GROUP BY user_id, question_key, kind",
            params,
        )
        last_any: dict[int, datetime] = {}
        periodic: dict[int, dict[str, datetime]] = {}
        for r in df.iter_rows(named=True):
            user_id, at = int(r["user_id"]), to_utc(r["last"])
            if user_id not in last_any or at > last_any[user_id]:
                last_any[user_id] = at
            per = periodic.setdefault(user_id, {})
            if r["kind"] == "periodic":
                per[str(r["question_key"])] = at
        return {u: SurveyHistory(last_any[u], periodic[u]) for u in last_any}

    def weekly_activity(self, user_id: int, now: datetime) -> WeeklyActivity:
        """Minutes watched and distinct pages loaded by a user in the seven days to ``now``."""
        return self._weekly_activities(now, user_id)[user_id]

    def weekly_activities(self, now: datetime) -> dict[int, WeeklyActivity]:
        """:meth:`weekly_activity` of every user, from one scan of the week's events."""
        return self._weekly_activities(now, None)

    def _weekly_activities(self, now: datetime, user_id: int | None) -> dict[int, WeeklyActivity]:
        end = naive_utc(now)
        params: list[Any] = [end - timedelta(days=7), end]
        if user_id is None:
            who, user_filter = "SELECT user_id, created_at FROM users", ""
        else:  # one user, known to the users table or not
            who = (
                "SELECT $3::BIGINT AS user_id, "
                "(SELECT created_at FROM users WHERE user_id = $3) AS created_at"
            )
            user_filter = "AND user_id = $3"
            params.append(user_id)
        cur = self.store.cursor()
        try:
            rows = cur.execute(
                "WITH week AS ("  # noqa: S608
                "  SELECT user_id,"
                "         coalesce(sum(watch_s) FILTER (WHERE event_type = 'view'), 0) / 60.0"
                "             AS minutes,"
                "         count(DISTINCT request_id) FILTER (WHERE event_type = 'impression')"
                "             AS pages"
                "  FROM events WHERE received_at > $1 AND received_at <= $2 "
                f" {user_filter} GROUP BY user_id"
                f"), who AS ({who}) "
                "SELECT u.user_id, coalesce(w.minutes, 0.0), coalesce(w.pages, 0), u.created_at "
                "FROM who u LEFT JOIN week w ON w.user_id = u.user_id",
                params,
            ).fetchall()
        finally:
            cur.close()
        return {
            int(u): WeeklyActivity(float(minutes or 0.0), int(pages or 0), created)
            for u, minutes, pages, created in rows
        }

    def prompts(self) -> pl.DataFrame:
        """Every survey prompt."""
        return self.store.query("SELECT * FROM survey_prompts ORDER BY shown_at")

    # -- satisfaction models ----------------------------------------------------------------
    def save_model(self, version: str, params: dict[str, Any], metrics: dict[str, Any]) -> None:
        """Store a fitted satisfaction model (its parameters are small JSON)."""
        with self.store.write() as cur:
            cur.execute(
                "INSERT OR REPLACE INTO satisfaction_models (version, trained_at, params, metrics) "
                "VALUES (?, ?, ?, ?)",
                [version, utcnow(), json.dumps(params), json.dumps(metrics, default=float)],
            )

    def latest_model(
        self, *, prefix: str = "sat-"
    ) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
        """``(version, params, metrics)`` of the newest satisfaction model of one kind (its
        version prefix: ``sat-`` in the moment, ``lts-`` long term), or ``None``."""
        df = self.store.query(
            "SELECT version, params, metrics FROM satisfaction_models WHERE version LIKE ? "
            "ORDER BY trained_at DESC, version DESC LIMIT 1",
            [prefix + "%"],
        )
        if df.height == 0:
            return None
        r = df.row(0, named=True)
        return str(r["version"]), json.loads(r["params"]), json.loads(r["metrics"])

    def replace_session_satisfaction(self, sessions: pl.DataFrame) -> int:
        """Replace the imputed satisfaction of every session in ``sessions``."""
        if sessions.height == 0:
            return 0
        cols = [
            "user_id",
            "session_start",
            "session_end",
            "minutes",
            "n_impressions",
            "n_views",
            "n_see_less",
            "abrupt_exit",
            "late_night",
            "experiments",
            "predicted",
            "observed",
            "model_version",
        ]
        arrow = sessions.select(cols).to_arrow()
        with self.store.write() as cur:
            cur.execute("DELETE FROM session_satisfaction")
            cur.register("_sessions", arrow)
            try:
                cur.execute("INSERT INTO session_satisfaction BY NAME SELECT * FROM _sessions")
            finally:
                cur.unregister("_sessions")
        return sessions.height
