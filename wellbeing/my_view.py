"""A person's own view over time: their minutes, their survey answers, and what changed.

Everything here is the person's own data, read from the store when asked (so an erased person
has none): minutes per local day and per ISO week (the governor's rule: ``watch_s`` of ``view``
events by the server's ``received_at``), every survey card they answered or dismissed, and a
timeline of the settings and signals that changed what their feed does (moods, standing rules,
data controls, time limits, parent links). ``GET /v1/users/{id}/my-view`` serves it, ``.../export``
as a file, ``/me`` as a small page.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from wellbeing.governor import resolve_timezone
from wellbeing.surveys import QUESTIONS

if TYPE_CHECKING:
    from storage.store import Store

MAX_DAYS = 366


def _minutes(store: Store, user_id: int, since: datetime, tz_name: str) -> dict[date, float]:
    """Minutes watched per local day: hourly sums in SQL, the local day in Python (DST-aware,
    and the store needs no time-zone support)."""
    tz = resolve_timezone(tz_name)
    df = store.query(
        "SELECT date_trunc('hour', received_at) AS hour, sum(watch_s) AS s FROM events "
        "WHERE user_id = ? AND event_type = 'view' AND received_at >= ? "
        "GROUP BY 1",
        [user_id, since],
    )
    out: dict[date, float] = {}
    for hour, secs in df.iter_rows():
        day = hour.replace(tzinfo=UTC).astimezone(tz).date()
        out[day] = out.get(day, 0.0) + float(secs or 0.0) / 60.0
    return out


def _timeline(store: Store, user_id: int, since: datetime) -> list[dict[str, Any]]:
    """What changed what the feed does for this person, oldest first."""
    items: list[dict[str, Any]] = []
    moods = store.query(
        "SELECT text, scope, created_at, expires_at, deleted_at FROM moods "
        "WHERE user_id = ? AND (created_at >= ? OR deleted_at >= ?)",
        [user_id, since, since],
    )
    for m in moods.iter_rows(named=True):
        if m["created_at"] >= since:
            items.append(
                {
                    "at": m["created_at"],
                    "what": "mood set" if m["scope"] != "standing" else "standing mood set",
                    "detail": m["text"],
                }
            )
        if m["deleted_at"] is not None and m["deleted_at"] >= since:
            items.append({"at": m["deleted_at"], "what": "mood removed", "detail": m["text"]})
    rules = store.query(
        "SELECT text, created_at, updated_at, deleted_at FROM standing_rules "
        "WHERE user_id = ? AND (created_at >= ? OR updated_at >= ? OR deleted_at >= ?)",
        [user_id, since, since, since],
    )
    for r in rules.iter_rows(named=True):
        if r["created_at"] >= since:
            items.append({"at": r["created_at"], "what": "rule saved", "detail": r["text"]})
        if r["updated_at"] > r["created_at"] and r["updated_at"] >= since and not r["deleted_at"]:
            items.append({"at": r["updated_at"], "what": "rule edited", "detail": r["text"]})
        if r["deleted_at"] is not None and r["deleted_at"] >= since:
            items.append({"at": r["deleted_at"], "what": "rule removed", "detail": r["text"]})
    controls = store.query(
        "SELECT location, watch_time, friends_activity, interaction_history, "
        "satisfaction_model, city, updated_at FROM data_controls WHERE user_id = ?",
        [user_id],
    )
    for c in controls.iter_rows(named=True):
        off = [k for k, v in c.items() if v is False]
        detail = "signals off: " + (", ".join(off) if off else "none")
        if c["city"]:
            detail += "; city set"
        items.append({"at": c["updated_at"], "what": "data controls (current)", "detail": detail})
    limits = store.query(
        "SELECT set_by, overrides, updated_at FROM governor_settings "
        "WHERE user_id = ? AND updated_at >= ?",
        [user_id, since],
    )
    for g in limits.iter_rows(named=True):
        who = "you" if g["set_by"] == "user" else "a parent"
        items.append(
            {
                "at": g["updated_at"],
                "what": f"time limits set by {who}",
                "detail": ", ".join(f"{k}={v}" for k, v in json.loads(g["overrides"]).items()),
            }
        )
    links = store.query(
        "SELECT created_at FROM parent_links WHERE child_id = ? AND created_at >= ?",
        [user_id, since],
    )
    for (at,) in links.iter_rows():
        items.append({"at": at, "what": "a parent account was linked", "detail": ""})
    items.sort(key=lambda i: i["at"])
    return items


def _surveys(store: Store, user_id: int, since: datetime) -> list[dict[str, Any]]:
    df = store.query(
        "SELECT question_key, shown_at, status, answer, responded_at FROM survey_prompts "
        "WHERE user_id = ? AND status IN ('answered', 'dismissed', 'expired') AND shown_at >= ? "
        "ORDER BY shown_at",
        [user_id, since],
    )
    out = []
    for r in df.iter_rows(named=True):
        q = QUESTIONS.get(r["question_key"])
        out.append(
            {
                "question": q.text if q else r["question_key"],
                "question_key": r["question_key"],
                "asked_at": r["shown_at"],
                "status": r["status"],
                "answer": r["answer"],
            }
        )
    return out


def personal_view(
    store: Store, user_id: int, *, timezone: str, now: datetime, days: int = 28
) -> dict[str, Any]:
    """The person's view over the last ``days`` days (1..366), times in UTC ISO 8601."""
    if not 1 <= days <= MAX_DAYS:
        msg = f"days must be between 1 and {MAX_DAYS}, got {days}"
        raise ValueError(msg)
    tz = resolve_timezone(timezone)
    today = now.astimezone(tz).date() if now.tzinfo else now.date()
    first = today - timedelta(days=days - 1)
    # A day boundary anywhere on Earth is within 14 h of UTC midnight: read a little more.
    since = datetime.combine(first, datetime.min.time()) - timedelta(hours=14)
    per_day = _minutes(store, user_id, since, timezone)
    daily: list[dict[str, Any]] = []
    weekly: dict[str, float] = {}
    for i in range(days):
        day = first + timedelta(days=i)
        minutes = round(per_day.get(day, 0.0), 1)
        daily.append({"day": day.isoformat(), "minutes": minutes})
        y, w, _ = day.isocalendar()
        key = f"{y}-W{w:02d}"
        weekly[key] = round(weekly.get(key, 0.0) + minutes, 1)
    return {
        "user_id": user_id,
        "timezone": timezone,
        "days": days,
        "minutes_per_day": daily,
        "minutes_per_week": [{"week": k, "minutes": v} for k, v in weekly.items()],
        "surveys": [_iso_times(s) for s in _surveys(store, user_id, since)],
        "changes": [_iso_times(c) for c in _timeline(store, user_id, since)],
    }


def _iso_times(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (v.isoformat() + "Z" if isinstance(v, datetime) and v.tzinfo is None else v)
        for k, v in row.items()
    }
