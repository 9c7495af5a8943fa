"""Reading the event log and the change feed by sequence number (PostgreSQL, migration 17).

Several serving workers share one PostgreSQL store; each keeps the serving state in memory and
follows what the others write through two numbered tables:

- ``events``: every appended row takes the next number of ``events_seq``. Appends hold one
  transaction-scoped advisory lock (:data:`EVENT_APPEND_LOCK`) from the moment they number rows
  until they commit, so rows become visible in number order and a reader that has seen number
  ``n`` will never later see a lower one (a rolled-back append leaves a hole no row fills).
- ``state_changes``: statement triggers note each key inserted, updated or deleted in the tables
  the serving state keeps (users, clips, moods, ...). These writes are not serialised (an
  erasure's transaction runs for seconds), so a lower number can commit after a higher one:
  :class:`FollowCursor` keeps such holes open for ``gap_timeout_s`` and rereads them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from storage.store import EVENT_COLUMNS, Store

#: The advisory lock every event append on PostgreSQL holds from numbering to commit.
EVENT_APPEND_LOCK = 7306525
#: The event log's columns a follower reads: all but ``features`` (the logged feature vector of
#: an impression, which nothing in the serving state reads), plus the follow columns.
FOLLOWED_EVENT_COLUMNS = (
    *(c for c in EVENT_COLUMNS if c != "features"),
    "seq",
    "origin",
    "logged_at",
)


#: The most numbers one jump may leave as holes.
MAX_HOLES = 10_000


@dataclass
class FollowCursor:
    """Where a follower is in a numbered table, with the holes it has not seen filled yet.

    ``high`` is the highest number applied. A number below it that was never seen is a hole:
    either a row not committed yet (it may still appear) or a rolled-back one (it never will).
    Holes are kept ``gap_timeout_s`` seconds (0: none are kept, for a table whose rows are
    visible in number order) and every read asks for them again.
    """

    high: int
    gap_timeout_s: float = 0.0
    clock: Callable[[], float] = time.monotonic
    holes: dict[int, float] = field(default_factory=dict)

    def floor(self) -> int:
        """Read rows numbered above this: the lowest open hole's predecessor, else ``high``."""
        self._expire()
        return min(self.holes) - 1 if self.holes else self.high

    def new(self, seqs: list[int]) -> list[bool]:
        """Which of the rows read (numbers ``seqs``) are new, without recording them."""
        return [s > self.high or s in self.holes for s in seqs]

    def take(self, seqs: list[int]) -> list[bool]:
        """Which of the rows read (numbers ``seqs``, ascending) are new; record them (call it
        once they are applied)."""
        now = self.clock()
        keep: list[bool] = []
        for s in seqs:
            if s > self.high:
                # A jump past MAX_HOLES numbers is a bulk write by another worker, not holes.
                if self.gap_timeout_s > 0 and s - self.high <= MAX_HOLES:
                    for missing in range(self.high + 1, s):
                        self.holes[missing] = now
                self.high = s
                keep.append(True)
            elif self.holes.pop(s, None) is not None:
                keep.append(True)
            else:
                keep.append(False)
        return keep

    def advance(self, through: int) -> None:
        """Move past every number up to ``through`` (a table without holes: the event log)."""
        self.high = max(self.high, through)

    def _expire(self) -> None:
        if not self.holes:
            return
        oldest = self.clock() - self.gap_timeout_s
        for s in [s for s, t in self.holes.items() if t < oldest]:
            del self.holes[s]


def events_high_water(store: Store) -> int:
    """The highest event number committed now (0 for an empty log)."""
    return int(store.scalar("SELECT coalesce(max(seq), 0) FROM events") or 0)


def changes_high_water(store: Store) -> int:
    """The highest change number committed now (0 when none)."""
    return int(store.scalar("SELECT coalesce(max(seq), 0) FROM state_changes") or 0)


def read_events(
    store: Store, cursor: FollowCursor, *, limit: int, skip_origin: int | None = None
) -> tuple[pl.DataFrame, int]:
    """Up to ``limit`` events numbered above the cursor, in number order, and the number the
    cursor may move to once they are applied (``cursor.advance(through)``).

    ``skip_origin`` leaves out the rows that writer committed (a worker's own events, applied
    when it wrote them) in the query itself, so a worker that writes most of the log does not
    read it back; the cursor still moves past them. That is sound because event rows become
    visible in number order (the append lock): every row numbered up to the high-water mark
    read first is visible to the second query.
    """
    through = events_high_water(store)
    if through <= cursor.high:
        return pl.DataFrame(), cursor.high
    cols = ", ".join(FOLLOWED_EVENT_COLUMNS)
    mine = "" if skip_origin is None else " AND (origin IS NULL OR origin <> ?)"
    params: list[object] = [cursor.high, through]
    if skip_origin is not None:
        params.append(skip_origin)
    rows = store.query(
        f"SELECT {cols} FROM events WHERE seq > ? AND seq <= ?{mine} "  # noqa: S608
        "ORDER BY seq LIMIT ?",
        [*params, limit],
    )
    if rows.height == limit:  # more may follow: move only as far as what was read
        through = int(rows["seq"][-1])
    return rows, through


def read_changes(store: Store, cursor: FollowCursor, *, limit: int) -> pl.DataFrame:
    """Up to ``limit`` change-feed rows numbered above the cursor's floor that the cursor has
    not applied (``seq, tbl, op, key, detail, origin, changed_at``; record them with
    ``cursor.take`` once applied)."""
    rows = store.query(
        "SELECT seq, tbl, op, key, detail, origin, changed_at FROM state_changes "
        "WHERE seq > ? ORDER BY seq LIMIT ?",
        [cursor.floor(), limit],
    )
    return _new_rows(rows, cursor)


def _new_rows(rows: pl.DataFrame, cursor: FollowCursor) -> pl.DataFrame:
    if rows.height == 0:
        return rows
    keep = cursor.new(rows["seq"].to_list())
    return rows if all(keep) else rows.filter(pl.Series(keep, dtype=pl.Boolean))


def prune_changes(store: Store, *, older_than_s: float) -> int:
    """Delete change-feed rows older than ``older_than_s`` seconds (every follower has read
    them long before); return how many."""
    with store.write() as cur:
        rows = cur.execute(
            "DELETE FROM state_changes WHERE changed_at < "
            "(clock_timestamp() AT TIME ZONE 'UTC') - make_interval(secs => ?) RETURNING seq",
            [older_than_s],
        ).fetchall()
    return len(rows)
