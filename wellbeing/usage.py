"""Usage for the governor, from the event log (SQL) or kept in memory per event.

Rules shared by :func:`compute_usage` and :class:`UsageTracker`:

- Time is the server's ``received_at``, never the client's ``ts`` (a device clock can be wrong
  or set on purpose, and limits must not move with it).
- Time used is the sum of ``watch_s`` over ``view`` events; two devices watching at once both
  add up, and each event counts once whatever its ``session_id``.
- The day is the user's local day (from local midnight, DST-aware).
- A session is a run of the user's events, on any device or ``session_id``, with no gap longer
  than ``session_gap_s``; the current session is the run holding the latest event, and only
  while that event is at most ``session_gap_s`` old (otherwise no session is open).
- AI-generated impressions count once per page and clip (``request_id``, ``item_id``), so an
  impression logged twice for one page is not counted twice.
- A break is a gap of at least ``break_gap_s`` (five minutes) between events, or since the last
  event.
"""

from __future__ import annotations

import logging
import threading
import time as _time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

import pyarrow as pa

from wellbeing.governor import Usage, local_day_start, resolve_timezone, to_utc

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from storage.store import Store

logger = logging.getLogger(__name__)

SESSION_GAP_S = 1800
BREAK_GAP_S = 300
LOOKBACK = timedelta(hours=48)
"""How far back the SQL looks: covers any local day; longer unbroken sessions are cut here."""

# One query serves one user or all of them: ``_targets`` (user_id, day_start) names the users
# and each one's local midnight; everything else is per user (PARTITION BY / GROUP BY user_id).
# Written in SQL that DuckDB and PostgreSQL both run (EXISTS, extract(epoch), array_agg).
_USAGE_SQL = """
WITH ev AS (
    SELECT e.user_id, e.event_id, e.item_id, e.received_at, e.event_type, e.request_id,
           greatest(coalesce(e.watch_s, 0.0), 0.0) AS watch_s,
           coalesce(c.is_generated, FALSE) AS is_generated
    FROM events e
    LEFT JOIN clips c ON c.item_id = e.item_id
    WHERE EXISTS (SELECT 1 FROM _targets t WHERE t.user_id = e.user_id)
      AND e.received_at > ? AND e.received_at <= ?
),
gaps AS (
    SELECT *,
           CAST(extract(epoch FROM received_at - lag(received_at)
                OVER (PARTITION BY user_id ORDER BY received_at, event_id)) AS DOUBLE) AS gap_s
    FROM ev
),
marks AS (
    SELECT user_id,
           max(received_at) AS last_at,
           max(received_at) FILTER (WHERE gap_s IS NULL OR gap_s > ?) AS session_start,
           max(received_at) FILTER (WHERE gap_s IS NULL OR gap_s >= ?) AS break_end
    FROM gaps
    GROUP BY user_id
)
SELECT
    g.user_id,
    coalesce(sum(g.watch_s) FILTER (
        WHERE g.event_type = 'view' AND g.received_at >= t.day_start), 0.0) AS seconds_today,
    coalesce(sum(g.watch_s) FILTER (
        WHERE g.event_type = 'view' AND g.received_at >= m.session_start), 0.0)
        AS session_seconds,
    coalesce(sum(g.watch_s) FILTER (
        WHERE g.event_type = 'view' AND g.received_at >= m.break_end), 0.0)
        AS seconds_since_break,
    array_agg(DISTINCT g.request_id) FILTER (
        WHERE g.event_type = 'impression' AND g.request_id IS NOT NULL
          AND g.received_at >= m.session_start) AS session_request_ids,
    count(DISTINCT coalesce(g.request_id, g.event_id) || ':' || coalesce(g.item_id, -1)) FILTER (
        WHERE g.event_type = 'impression' AND g.is_generated AND g.received_at >= t.day_start)
        AS generated_today,
    max(m.last_at) AS last_at
FROM gaps g
JOIN marks m ON m.user_id = g.user_id
JOIN _targets t ON t.user_id = g.user_id
GROUP BY g.user_id
"""


@dataclass(frozen=True, slots=True)
class UsageSnapshot:
    """:class:`Usage` plus what an in-memory tracker needs to carry on from it."""

    usage: Usage
    last_event_at: datetime | None
    session_request_ids: frozenset[str]
    local_day: date


def usage_snapshot(
    store: Store,
    user_id: int,
    *,
    now_utc: datetime,
    timezone: str,
    session_gap_s: int = SESSION_GAP_S,
    break_gap_s: int = BREAK_GAP_S,
) -> UsageSnapshot:
    """Compute a user's usage as of ``now_utc`` from the event log (see the module rules).

    Only events received at or before ``now_utc`` count, so a past instant can be replayed.
    """
    return usage_snapshots(
        store,
        {user_id: timezone},
        now_utc=now_utc,
        session_gap_s=session_gap_s,
        break_gap_s=break_gap_s,
    )[user_id]


def usage_snapshots(
    store: Store,
    timezones: Mapping[int, str],
    *,
    now_utc: datetime,
    session_gap_s: int = SESSION_GAP_S,
    break_gap_s: int = BREAK_GAP_S,
) -> dict[int, UsageSnapshot]:
    """Usage snapshots of many users (``{user_id: timezone}``) from one scan of the event log.

    A user's first page would otherwise read the log for that user alone: ~30 ms per user at
    20M events, where one scan of the last 48 hours serves every user at once.

    Parameters
    ----------
    store
        The store holding ``events`` and ``clips``.
    timezones
        The users to compute, each with their IANA timezone (the local day).
    now_utc
        The server's current time; only events received at or before it count.
    session_gap_s, break_gap_s
        As in :func:`compute_usage`.

    Returns
    -------
    dict
        A snapshot for every user in ``timezones`` (zero usage where the window has no event).
    """
    started = _time.perf_counter()
    now = to_utc(now_utc)
    zones = {name: resolve_timezone(name) for name in set(timezones.values())}
    day_start = {name: _naive(local_day_start(now, tz)) for name, tz in zones.items()}
    local_day = {name: now.astimezone(tz).date() for name, tz in zones.items()}
    targets = pa.table(
        {
            "user_id": pa.array(list(timezones), type=pa.int64()),
            "day_start": pa.array(
                [day_start[z] for z in timezones.values()], type=pa.timestamp("us")
            ),
        }
    )
    params = [_naive(now - LOOKBACK), _naive(now), float(session_gap_s), float(break_gap_s)]
    cur = store.cursor()
    try:
        cur.register("_targets", targets)
        rows = cur.execute(_USAGE_SQL, params).fetchall()
    finally:
        cur.close()
    found = {int(r[0]): r[1:] for r in rows}
    out: dict[int, UsageSnapshot] = {}
    for user_id, zone in timezones.items():
        seconds_today, session_s, since_break_s, request_ids, generated, last_at = found.get(
            user_id, (0.0, 0.0, 0.0, [], 0, None)
        )
        idle_s = (now - to_utc(last_at)).total_seconds() if last_at is not None else None
        session_open = idle_s is not None and idle_s <= session_gap_s
        on_break = idle_s is None or idle_s >= break_gap_s
        ids = frozenset(request_ids or []) if session_open else frozenset()
        out[user_id] = UsageSnapshot(
            usage=Usage(
                seconds_today=float(seconds_today),
                session_seconds=float(session_s) if session_open else 0.0,
                seconds_since_break=0.0 if on_break else float(since_break_s),
                pages_this_session=len(ids),
                generated_today=int(generated),
            ),
            last_event_at=to_utc(last_at) if last_at is not None else None,
            session_request_ids=ids,
            local_day=local_day[zone],
        )
    logger.debug(
        "usage of %d users (%d with events in the window) in %.1f ms",
        len(out),
        len(found),
        (_time.perf_counter() - started) * 1000,
    )
    return out


def compute_usage(
    store: Store,
    user_id: int,
    *,
    now_utc: datetime,
    timezone: str,
    session_gap_s: int = SESSION_GAP_S,
) -> Usage:
    """Return a user's :class:`Usage` as of ``now_utc`` from the event log.

    Parameters
    ----------
    store
        The DuckDB store holding ``events`` (and ``clips`` for ``is_generated``).
    user_id
        The user.
    now_utc
        The server's current time (naive values are UTC).
    timezone
        The user's IANA timezone for the local day (unknown: UTC, with a warning).
    session_gap_s
        A gap longer than this between two of the user's events (any device) ends a session.
    """
    return usage_snapshot(
        store, user_id, now_utc=now_utc, timezone=timezone, session_gap_s=session_gap_s
    ).usage


@dataclass(slots=True)
class _UserUsage:
    timezone: str
    local_day: date
    seeded_at: float = 0.0  # time.monotonic() of the last read from the store
    last_event_at: datetime | None = None
    seconds_today: float = 0.0
    generated_today: int = 0
    session_seconds: float = 0.0
    seconds_since_break: float = 0.0
    request_ids: set[str] = field(default_factory=set)

    @classmethod
    def from_snapshot(cls, snap: UsageSnapshot, timezone: str, *, seeded_at: float) -> _UserUsage:
        """The in-memory state that carries on from a store snapshot."""
        return cls(
            timezone=timezone,
            local_day=snap.local_day,
            seeded_at=seeded_at,
            last_event_at=snap.last_event_at,
            seconds_today=snap.usage.seconds_today,
            generated_today=snap.usage.generated_today,
            session_seconds=snap.usage.session_seconds,
            seconds_since_break=snap.usage.seconds_since_break,
            request_ids=set(snap.session_request_ids),
        )


class UsageTracker:
    """Usage per user kept in memory and updated per event, so a request needs no SQL.

    A user is seeded from :func:`usage_snapshot` the first time they are queried (when a store
    is given). Record events after they are committed to the store: events recorded for a user
    not seeded yet are ignored, because seeding reads them from the store. Without a store, an
    unknown user starts from zero. Thread-safe.

    Parameters
    ----------
    store
        The store to seed users from, or ``None`` for a purely in-memory tracker.
    session_gap_s, break_gap_s
        As in :func:`compute_usage`.
    default_timezone
        The timezone of a user first seen through a ``record_*`` call without a store.
    max_age_s
        With a store: re-read a user's usage from the store when their in-memory state is
        older than this. Events that reach another API replica are only in the store, so with
        several replicas the governor may lag another replica's viewing by at most this long;
        ``None`` never re-reads (one replica).
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        session_gap_s: int = SESSION_GAP_S,
        break_gap_s: int = BREAK_GAP_S,
        default_timezone: str = "UTC",
        max_age_s: float | None = None,
    ) -> None:
        self.store = store
        self.max_age_s = max_age_s
        self.session_gap_s = session_gap_s
        self.break_gap_s = break_gap_s
        self.default_timezone = default_timezone
        self._users: dict[int, _UserUsage] = {}
        self._lock = threading.Lock()
        # After seed_all every user's usage is held (absent = no events in the window), so an
        # unknown user starts from zero without SQL and every committed event is recorded.
        self._complete = False
        self._reseed: set[int] = set()  # forgotten since seed_all: read from the store again
        self.seeded_all_at: float | None = None
        # Timezone of a user first met through an event after seed_all (the governor sets it
        # from the users' profiles); without it such a user starts on ``default_timezone``.
        self.timezone_of: Callable[[int], str] | None = None

    def __contains__(self, user_id: object) -> bool:
        if self._complete:
            return user_id not in self._reseed
        return user_id in self._users

    def seed_all(self, timezones: Mapping[int, str], *, now_utc: datetime) -> int:
        """(Re)load every user's usage from one scan of the event log; return how many were
        seeded. From then on a user the tracker does not hold has no usage in the window, and
        staleness is renewed by calling this again (the ``usage_refresh`` job) instead of one
        query per user and request.

        Parameters
        ----------
        timezones
            Every user's IANA timezone (``{user_id: timezone}``).
        now_utc
            The server's current time.
        """
        if self.store is None:
            msg = "seed_all needs a store"
            raise ValueError(msg)
        snaps = usage_snapshots(
            self.store,
            timezones,
            now_utc=now_utc,
            session_gap_s=self.session_gap_s,
            break_gap_s=self.break_gap_s,
        )
        mono = _time.monotonic()
        fresh = {
            user_id: _UserUsage.from_snapshot(snap, timezones[user_id], seeded_at=mono)
            # users with no event in the window need no entry: absent means zero usage
            for user_id, snap in snaps.items()
            if snap.last_event_at is not None
        }
        with self._lock:
            self._users = fresh
            self._reseed.clear()
            self._complete = True
            self.seeded_all_at = mono
        return len(fresh)

    def seed(self, user_id: int, *, now_utc: datetime, timezone: str) -> Usage:
        """(Re)load a user's state from the store as of ``now_utc`` and return their usage."""
        if self.store is None:
            with self._lock:
                self._users[user_id] = _UserUsage(
                    timezone=timezone, local_day=_local_date(now_utc, timezone)
                )
            return Usage()
        snap = usage_snapshot(
            self.store,
            user_id,
            now_utc=now_utc,
            timezone=timezone,
            session_gap_s=self.session_gap_s,
            break_gap_s=self.break_gap_s,
        )
        with self._lock:
            self._reseed.discard(user_id)
            self._users[user_id] = _UserUsage.from_snapshot(
                snap, timezone, seeded_at=_time.monotonic()
            )
        return snap.usage

    def forget(self, user_id: int) -> None:
        """Drop a user's state (the next query seeds again)."""
        with self._lock:
            self._users.pop(user_id, None)
            if self._complete:
                self._reseed.add(user_id)

    def record_view(self, user_id: int, watch_s: float, received_at: datetime) -> None:
        """Add a ``view`` event's watch time, counted at its server receive time."""
        with self._lock:
            state = self._state_for_event(user_id, received_at)
            if state is None:
                return
            seconds = max(0.0, float(watch_s))
            state.seconds_today += seconds
            state.session_seconds += seconds
            state.seconds_since_break += seconds

    def record_page(
        self, user_id: int, request_id: str, received_at: datetime, n_generated: int
    ) -> None:
        """Add a served page (its ``request_id``) with ``n_generated`` AI-generated clips."""
        with self._lock:
            state = self._state_for_event(user_id, received_at)
            if state is None or request_id in state.request_ids:
                return
            state.request_ids.add(request_id)
            state.generated_today += max(0, int(n_generated))

    def usage(self, user_id: int, *, now_utc: datetime, timezone: str) -> Usage:
        """Return the user's usage as of ``now_utc``, seeding them first when unknown.

        A change of ``timezone`` reseeds from the store (the local day moved).
        """
        with self._lock:
            state = self._users.get(user_id)
            if state is not None and state.timezone != timezone and self.store is None:
                state.timezone = timezone
        stale = (
            state is not None
            and self.store is not None
            and self.max_age_s is not None
            and _time.monotonic() - state.seeded_at > self.max_age_s
        )
        if state is None and self._complete and user_id not in self._reseed:
            with self._lock:
                state = self._users.setdefault(
                    user_id,
                    _UserUsage(
                        timezone=timezone,
                        local_day=_local_date(now_utc, timezone),
                        seeded_at=_time.monotonic(),
                    ),
                )
        elif (
            state is None
            or state.timezone != timezone
            or (stale and not self._complete)
            or (stale and self.max_age_s == 0)
        ):
            return self.seed(user_id, now_utc=now_utc, timezone=timezone)
        if state.timezone != timezone:  # the user moved: their local day is another
            return self.seed(user_id, now_utc=now_utc, timezone=timezone)
        now = to_utc(now_utc)
        with self._lock:
            idle_s = (
                (now - state.last_event_at).total_seconds()
                if state.last_event_at is not None
                else None
            )
            same_day = _local_date(now, state.timezone) == state.local_day
            session_open = idle_s is not None and idle_s <= self.session_gap_s
            on_break = idle_s is None or idle_s >= self.break_gap_s
            return Usage(
                seconds_today=state.seconds_today if same_day else 0.0,
                session_seconds=state.session_seconds if session_open else 0.0,
                seconds_since_break=0.0 if on_break else state.seconds_since_break,
                pages_this_session=len(state.request_ids) if session_open else 0,
                generated_today=state.generated_today if same_day else 0,
            )

    def _state_for_event(self, user_id: int, received_at: datetime) -> _UserUsage | None:
        """Roll the user's day, session and break forward to ``received_at`` (lock held)."""
        at = to_utc(received_at)
        state = self._users.get(user_id)
        if state is None:
            if self.store is not None and (not self._complete or user_id in self._reseed):
                logger.debug("usage event for an unseeded user ignored (seeded from store)")
                return None
            tz_name = self.default_timezone
            if self._complete and self.timezone_of is not None:
                tz_name = self.timezone_of(user_id)
            state = _UserUsage(timezone=tz_name, local_day=_local_date(at, tz_name))
            self._users[user_id] = state
        day = _local_date(at, state.timezone)
        if day > state.local_day:
            state.local_day, state.seconds_today, state.generated_today = day, 0.0, 0
        if state.last_event_at is None or at > state.last_event_at:
            gap_s = (
                (at - state.last_event_at).total_seconds()
                if state.last_event_at is not None
                else None
            )
            if gap_s is None or gap_s > self.session_gap_s:
                state.session_seconds = 0.0
                state.request_ids.clear()
            if gap_s is None or gap_s >= self.break_gap_s:
                state.seconds_since_break = 0.0
            state.last_event_at = at
        return state


def _local_date(moment: datetime, timezone: str) -> date:
    return to_utc(moment).astimezone(resolve_timezone(timezone)).date()


def _naive(moment: datetime) -> datetime:
    """Naive UTC, the form the store's TIMESTAMP columns hold."""
    return to_utc(moment).replace(tzinfo=None)
