"""The public transparency report: aggregate satisfaction over time in a hash-chained log.

A job publishes, on a fixed schedule (every ``period_days``, periods aligned to Monday 00:00
UTC), one entry per completed period with the aggregate figures of that period: the six-month
question ("is your life better for using it", weighted by ``1 / (inclusion x response
propensity)`` like the analyst reports), the regret proxy and time spent, each for everyone,
teens and adults apart. A group with fewer than ``min_cohort`` people in a figure is
published as suppressed, so no person can be singled out.

Each entry's ``hash`` is the SHA-256 of the previous entry's hash and the entry's canonical
JSON (sorted keys, no spaces). The store only ever appends to ``transparency_log``; what makes
burying a bad period visible is :func:`verify`:

- an entry whose figures were rewritten no longer matches its hash, and every later entry's
  link breaks with it unless all of them are rewritten too;
- a removed entry leaves a gap in the sequence numbers and in the periods;
- a period that was due (the schedule is fixed) but is not published is reported as missing,
  so the newest period cannot be quietly left out either;
- anyone who kept an earlier copy of the report (the public route serves it whole) can check
  that the chain still holds the hashes they saw (``anchors``), which catches even a rewrite of
  the whole chain.

Published figures are aggregates over cohorts of at least ``min_cohort`` people; erasing a
person does not rewrite them (they hold nothing about one person).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from wellbeing.analytics import create_views
from wellbeing.settings import TransparencySettings

if TYPE_CHECKING:
    from storage.store import Store

logger = logging.getLogger(__name__)

GENESIS = "0" * 64
#: Periods are aligned to this instant (a Monday, 00:00 UTC).
EPOCH = datetime(2024, 1, 1)
FORMAT_VERSION = 1
GROUPS = ("everyone", "teens", "adults")


@dataclass(frozen=True)
class Entry:
    """One published period."""

    seq: int
    period_start: datetime
    period_end: datetime
    published_at: datetime
    body: str
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        """The entry as the public report serves it (figures parsed, times ISO 8601)."""
        return {
            "seq": self.seq,
            "period_start": _iso(self.period_start),
            "period_end": _iso(self.period_end),
            "published_at": _iso(self.published_at),
            "figures": json.loads(self.body),
            "body": self.body,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class Verification:
    """What :func:`verify` found."""

    ok: bool
    entries: int
    head: str
    problems: list[str]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "ok": self.ok,
            "entries": self.entries,
            "head": self.head,
            "problems": self.problems,
        }


def _iso(t: datetime) -> str:
    return t.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def _naive_utc(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def entry_hash(prev_hash: str, seq: int, start: datetime, end: datetime, body: str) -> str:
    """SHA-256 over the previous hash, the sequence number, the period and the body."""
    h = hashlib.sha256()
    for part in (prev_hash, str(seq), _iso(start), _iso(end), body):
        h.update(part.encode())
        h.update(b"\x1f")  # a separator no field contains, so fields cannot shift into each other
    return h.hexdigest()


def period_of(t: datetime, period_days: int) -> tuple[datetime, datetime]:
    """The period containing ``t`` (naive UTC)."""
    span = timedelta(days=period_days)
    n = (_naive_utc(t) - EPOCH) // span
    start = EPOCH + n * span
    return start, start + span


def _suppressed(n: int, min_cohort: int) -> dict[str, Any] | None:
    if n < min_cohort:
        return {"suppressed": True, "reason": f"fewer than {min_cohort} people"}
    return None


def period_figures(
    store: Store, start: datetime, end: datetime, settings: TransparencySettings
) -> dict[str, Any]:
    """The aggregate figures of one period, per group, with small groups suppressed (the
    analytics views must exist: :func:`wellbeing.analytics.create_views`)."""
    floor = settings.min_cohort
    answers = store.query(
        """SELECT is_teen,
                  count(DISTINCT user_id) AS people,
                  sum(weight * (answer >= 4)::INT) / sum(weight) AS share_better,
                  sum(weight * (answer <= 2)::INT) / sum(weight) AS share_worse,
                  avg((answer >= 4)::INT) AS naive_share_better
           FROM wb_answers
           WHERE question_key = 'life_better_6m' AND status = 'answered'
             AND shown_at >= ? AND shown_at < ?
           GROUP BY GROUPING SETS ((is_teen), ())""",
        [start, end],
    )
    sessions = store.query(
        """SELECT is_teen,
                  count(DISTINCT user_id) AS people,
                  sum(minutes) AS minutes,
                  avg(regret::INT) FILTER (WHERE long) AS regret_share_long,
                  count(*) FILTER (WHERE long) AS long_sessions
           FROM wb_sessions
           WHERE session_start >= ? AND session_start < ?
           GROUP BY GROUPING SETS ((is_teen), ())""",
        [start, end],
    )
    days = (end - start).total_seconds() / 86400.0
    out: dict[str, Any] = {"format": FORMAT_VERSION, "min_cohort": floor}
    for group in GROUPS:
        a = _group_row(answers.to_dicts(), group)
        s = _group_row(sessions.to_dicts(), group)
        n_a = int(a["people"]) if a else 0
        n_s = int(s["people"]) if s else 0
        life: dict[str, Any] = {"people": n_a}
        life |= _suppressed(n_a, floor) or {
            "share_better": _round(a, "share_better"),
            "share_worse": _round(a, "share_worse"),
            "naive_share_better": _round(a, "naive_share_better"),
        }
        use: dict[str, Any] = {"people": n_s}
        use |= _suppressed(n_s, floor) or {
            "minutes_per_person_per_day": round(float(s["minutes"]) / n_s / days, 2) if s else None,
            "regret_share_of_long_sessions": _round(s, "regret_share_long"),
            "long_sessions": int(s["long_sessions"]) if s else 0,
        }
        out[group] = {"life_better_6m": life, "time_and_regret": use}
    return out


def _group_row(rows: list[dict[str, Any]], group: str) -> dict[str, Any] | None:
    """The row of ``group`` in a GROUPING SETS result (the total has ``is_teen`` NULL; a
    group's own row has it set)."""
    for r in rows:
        teen = r["is_teen"]
        if (
            (group == "everyone" and teen is None)
            or (group == "teens" and teen is True)
            or (group == "adults" and teen is False)
        ):
            return r
    return None


def _round(row: Mapping[str, Any] | None, key: str) -> float | None:
    if row is None or row[key] is None:
        return None
    return round(float(row[key]), 4)


def canonical(figures: Mapping[str, Any]) -> str:
    """The one JSON text of a body that the hash covers."""
    return json.dumps(figures, sort_keys=True, separators=(",", ":"), allow_nan=False)


def entries(store: Store) -> list[Entry]:
    """Every published entry, in sequence order."""
    df = store.query(
        "SELECT seq, period_start, period_end, published_at, body, prev_hash, hash "
        "FROM transparency_log ORDER BY seq"
    )
    return [Entry(**r) for r in df.to_dicts()]


def publish_due(
    store: Store, settings: TransparencySettings, *, now: datetime | None = None
) -> list[Entry]:
    """Publish every completed period not yet published, oldest first; return them.

    A new log starts ``backfill_periods`` periods back. A period with no data is published
    too (everything suppressed), so the chain has no gaps to explain.
    """
    now = _naive_utc(now or datetime.now(UTC))
    current_start, _ = period_of(now, settings.period_days)
    span = timedelta(days=settings.period_days)
    head = _head(store)
    if head is None:
        seq, start, prev = 0, current_start - settings.backfill_periods * span, GENESIS
    else:
        seq, start, prev = head
    published: list[Entry] = []
    if start + span <= current_start:
        create_views(store)
    while start + span <= current_start:
        end = start + span
        body = canonical(period_figures(store, start, end, settings))
        seq += 1
        digest = entry_hash(prev, seq, start, end, body)
        published.append(Entry(seq, start, end, now, body, prev, digest))
        prev, start = digest, end
    if not published:
        return []
    with store.write() as cur:
        # Another publisher may have appended meanwhile: then this run's entries would not
        # link to the head, so none is written (the next run starts from the new head).
        if _head_of(cur) != head:
            logger.info("transparency report: another run published first")
            return []
        for e in published:
            cur.execute(
                "INSERT INTO transparency_log "
                "(seq, period_start, period_end, published_at, body, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [e.seq, e.period_start, e.period_end, e.published_at, e.body, e.prev_hash, e.hash],
            )
    if published:
        logger.info("transparency report: %d period(s) published", len(published))
    return published


def _head_of(cur: Any) -> tuple[int, datetime, str] | None:
    row = cur.execute(
        "SELECT seq, period_end, hash FROM transparency_log ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    return None if row is None else (int(row[0]), _parse_time(row[1]), str(row[2]))


def _head(store: Store) -> tuple[int, datetime, str] | None:
    cur = store.cursor()
    try:
        return _head_of(cur)
    finally:
        cur.close()


def verify(
    items: Iterable[Mapping[str, Any] | Entry],
    *,
    period_days: int,
    now: datetime | None = None,
    anchors: Mapping[int, str] | None = None,
    grace: timedelta = timedelta(days=1),
) -> Verification:
    """Check a chain of entries (from the store or from a downloaded report).

    ``anchors`` maps sequence numbers to hashes seen earlier (a kept copy of the report);
    ``grace`` is how long after a period ends its entry may take to appear before it counts as
    missing.
    """
    rows = [_as_entry(i) for i in items]
    problems: list[str] = []
    prev, expect_seq, expect_start = GENESIS, 1, None
    span = timedelta(days=period_days)
    for e in rows:
        label = f"period {_iso(e.period_start)[:10]} (seq {e.seq})"
        if e.seq != expect_seq:
            problems.append(f"{label}: expected seq {expect_seq}; entries were removed")
        if expect_start is not None and e.period_start != expect_start:
            problems.append(f"{label}: expected to start {_iso(expect_start)[:10]}; a gap")
        if e.period_end - e.period_start != span:
            problems.append(f"{label}: not a {period_days}-day period")
        if e.prev_hash != prev:
            problems.append(f"{label}: does not link to the entry before it")
        if entry_hash(e.prev_hash, e.seq, e.period_start, e.period_end, e.body) != e.hash:
            problems.append(f"{label}: its figures do not match its hash (altered)")
        prev, expect_seq, expect_start = e.hash, e.seq + 1, e.period_end
    if anchors:
        by_seq = {e.seq: e.hash for e in rows}
        for seq, digest in sorted(anchors.items()):
            if by_seq.get(seq) != digest:
                problems.append(f"seq {seq}: the hash kept earlier is not in the chain")
    if now is not None and rows:
        due_before = _naive_utc(now) - grace
        if rows[-1].period_end + span <= due_before:
            missing = rows[-1].period_end
            problems.append(f"period {_iso(missing)[:10]}: due but not published")
    return Verification(not problems, len(rows), prev, problems)


def _as_entry(item: Mapping[str, Any] | Entry) -> Entry:
    if isinstance(item, Entry):
        return item
    return Entry(
        seq=int(item["seq"]),
        period_start=_parse_time(item["period_start"]),
        period_end=_parse_time(item["period_end"]),
        published_at=_parse_time(item["published_at"]),
        body=str(item["body"]),
        prev_hash=str(item["prev_hash"]),
        hash=str(item["hash"]),
    )


def _parse_time(v: Any) -> datetime:
    if isinstance(v, datetime):
        return _naive_utc(v)
    return _naive_utc(datetime.fromisoformat(str(v).replace("Z", "+00:00")))
