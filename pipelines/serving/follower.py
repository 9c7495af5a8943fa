"""Keeping one worker's serving state current with what other workers write (PostgreSQL).

Every serving worker holds the serving state in memory and applies what it writes itself at
once. What other workers, jobs and the CLI write reaches it through :class:`StoreFollower`, a
thread that reads the shared store by sequence number (``storage/log_follow.py``):

- new rows of the **event log** (engagement counters, seen clips, histories, follows, the
  governor's minutes, reports): handed to the same function that applies this worker's own
  committed events, so each event counts once in each worker;
- the **change feed** (users, clips, caption vectors, follows, blocks, moods, standing rules,
  goals, data controls, governor settings, parent links, API keys, likeness consents): grouped by
  table and handed to a handler that rereads those keys from the store.

Rows this worker wrote carry its ``origin`` and are skipped: it applied them when it wrote them.
A pass reads at most ``batch_rows`` rows per table and reads again at once when it filled that;
otherwise it sleeps ``interval_s``. A failed pass is logged, counted and retried: the cursors
advance only over rows that were applied (rows that fail ``MAX_TRIES`` times in a row are skipped
with an error, so one bad row cannot stop a worker from following).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import polars as pl

from pipelines.serving.engine import CAPTION_SPACE, Engine, clip_payloads
from pipelines.serving.erasure import forget_erased
from pipelines.serving.settings import FollowSettings
from pipelines.serving.telemetry import Telemetry
from storage.erasure import erase_user_rows
from storage.errors import IndexUnavailableError
from storage.log_follow import FollowCursor, read_changes, read_events
from storage.store import Store

logger = logging.getLogger(__name__)

#: Failed applications of the same rows before they are skipped.
MAX_TRIES = 3
#: The columns the follower adds to an event row; dropped before the rows are applied.
_FOLLOW_ONLY = ("seq", "origin", "logged_at")


@dataclass(frozen=True)
class FollowPass:
    """What one pass applied from other writers."""

    events: int
    changes: int


class StoreFollower:
    """A thread that applies other writers' events and changes to this worker's state.

    Parameters
    ----------
    store
        The shared store (PostgreSQL, migrated to 17 or later).
    origin
        This worker's number (its own rows are skipped).
    apply_events
        Applies committed events (the worker's own commit path).
    apply_changes
        Applies change-feed rows (``tbl, op, key, detail``), grouped by nothing in particular.
    start
        The event log's and the change feed's numbers the state was loaded up to.
    settings
        Poll interval, batch size, how long holes in the change feed are reread.
    telemetry
        Records the follow lag and failures.
    """

    def __init__(
        self,
        store: Store,
        *,
        origin: int,
        start: tuple[int, int],
        apply_events: Callable[[pl.DataFrame], None],
        apply_changes: Callable[[pl.DataFrame], None],
        settings: FollowSettings,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.store = store
        self.origin = origin
        self.settings = settings
        self._apply_events = apply_events
        self._apply_changes = apply_changes
        self.telemetry = telemetry
        # Start at the numbers read before the state was loaded: the state holds every event
        # up to the first (its replay stopped there); a change after the second may already be
        # in it, and applying it again is harmless (a handler rereads the key's rows).
        self.events = FollowCursor(start[0])
        self.changes = FollowCursor(start[1], gap_timeout_s=settings.gap_timeout_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one pass at a time (the thread, or a test's poll)
        self.passes = 0
        self.failures = 0
        self.last_error: str | None = None
        self._failing = False
        self._tries: dict[str, int] = {}

    def start(self) -> None:
        """Start following on a daemon thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="store-follower", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the thread (after its current pass)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                done = self.poll()
            except Exception as exc:  # a store hiccup: log, count, retry after a pause
                self.failures += 1
                self._failing = True
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.exception("following the store failed; retrying")
                if self.telemetry is not None:
                    self.telemetry.follow_failed()
                self._stop.wait(min(1.0, self.settings.interval_s * 10))
                continue
            self._failing = False
            full = max(done.events, done.changes) >= self.settings.batch_rows
            if not full:
                self._stop.wait(self.settings.interval_s)

    def poll(self) -> FollowPass:
        """Read and apply what other writers committed since the last pass; return the counts.

        Changes first: an event about a clip or user another worker just created needs the
        clip or user in the state before it can count.
        """
        with self._lock:
            limit = self.settings.batch_rows
            changes = read_changes(self.store, self.changes, limit=limit)
            theirs = _others(changes, self.origin)
            seqs = changes["seq"].to_list() if changes.height else []
            if theirs.height:
                self._apply("changes", seqs, lambda: self._apply_changes(theirs))
                self._observe("changes", theirs["changed_at"])
            else:
                self.changes.take(seqs)
            # Own events are left out by the query (most of the log on a busy worker).
            foreign, through = read_events(
                self.store, self.events, limit=limit, skip_origin=self.origin
            )
            if foreign.height:
                rows = foreign.drop(_FOLLOW_ONLY)
                self._apply("events", through, lambda: self._apply_events(rows))
                self._observe("events", foreign["logged_at"])
            else:
                self.events.advance(through)
            self.passes += 1
            return FollowPass(events=foreign.height, changes=theirs.height)

    def _apply(self, kind: str, taken: int | list[int], apply: Callable[[], None]) -> None:
        """Apply rows, then move the cursor over them (``taken``: the event log's number to
        move to, or the change numbers read). A failure leaves the cursor where it was, so the
        next pass reads the rows again; after ``MAX_TRIES`` failures in a row the rows are
        skipped with an error in the log (one bad row must not stop a worker from following
        for good)."""
        try:
            apply()
        except Exception:
            self._tries[kind] = self._tries.get(kind, 0) + 1
            if self._tries[kind] < MAX_TRIES:
                raise
            logger.exception("skipping a batch of %s rows after %d failed tries", kind, MAX_TRIES)
        self._tries[kind] = 0
        if isinstance(taken, int):
            self.events.advance(taken)
        else:
            self.changes.take(taken)

    def _observe(self, kind: str, committed: pl.Series) -> None:
        if self.telemetry is None:
            return
        now = datetime.now(UTC).replace(tzinfo=None)
        lags = [max(0.0, (now - t).total_seconds()) for t in committed.to_list() if t is not None]
        self.telemetry.followed(kind, lags)

    def state(self) -> dict[str, object]:
        """Where the follower is (for health): cursors, open holes, passes and failures."""
        return {
            "events_seq": self.events.high,
            "changes_seq": self.changes.high,
            "open_holes": len(self.changes.holes),
            "passes": self.passes,
            "failures": self.failures,
            "last_error": self.last_error,
            "degraded": self._failing,
        }


def _others(rows: pl.DataFrame, origin: int) -> pl.DataFrame:
    """The rows another writer committed (origin unset or not ours)."""
    if rows.height == 0:
        return rows
    return rows.filter(pl.col("origin").is_null() | (pl.col("origin") != origin))


class ChangeApplier:
    """Applies change-feed rows to one engine: each handler rereads its keys from the store, so
    rows applied twice or out of order leave the state as the store is now.

    Tables are handled in a fixed order: users and clips before what names them, and an
    erasure (a user's row gone) after the clips it deleted are known.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        e = engine
        # Tables whose keys are user ids and whose service rereads one user.
        self.per_user: dict[str, Callable[[int], None]] = {
            "moods": e.steering.moods.reload_user,
            "standing_rules": e.steering.rules.reload_user,
            "goals": e.steering.goals.reload_user,
            "data_controls": e.data_controls.reload_user,
            "governor_settings": e.wellbeing.governor.reload_user,
            "survey_prompts": e.wellbeing.surveys.reload_user,
        }
        # Tables whose any change makes a whole cache read again.
        self.whole: dict[str, Callable[[], object]] = {
            "cameo_consents": e.generation.consents.invalidate,
            "clip_reviews": e.generation.reviews.invalidate,
            "user_vectors": e.collab.users.reload,
            "satisfaction_models": e.wellbeing.satisfaction.reload,
            # What the generator refuses to make: a worker generating with an old list
            # could render a character whose holder opted out through another worker.
            "rights_optouts": e.generation.optouts.invalidate,
            "protected_people": e.generation.people.invalidate,
        }

    def __call__(self, changes: pl.DataFrame) -> None:
        """Apply ``changes`` (``tbl, op, key, detail`` rows from other writers)."""
        by_table = {
            str(t): changes.filter(pl.col("tbl") == t) for t in changes["tbl"].unique().to_list()
        }
        erased = self._users(by_table.pop("users", None))
        deleted = self._clips(by_table.pop("clips", None))
        self._erased(erased, deleted)
        if (rows := by_table.pop("clip_vectors", None)) is not None:
            self._vectors(rows)
        if (rows := by_table.pop("follows", None)) is not None:
            self._follows(rows)
        if (rows := by_table.pop("blocks", None)) is not None:
            self._blocks(rows)
        for table, rows in by_table.items():
            if table in self.per_user:
                for uid in _int_keys(rows):
                    self.per_user[table](uid)
            elif table in self.whole:
                self.whole[table]()
            for listener in self.engine.change_listeners.get(table, []):
                listener(rows)

    def _users(self, rows: pl.DataFrame | None) -> list[int]:
        """Add or update the users still in the store; return those gone (erased)."""
        if rows is None:
            return []
        e = self.engine
        ids = _int_keys(rows)
        found = e.store.query(
            "SELECT user_id, age_band, is_teen, timezone, settings FROM users "
            "WHERE user_id IN (SELECT unnest(?::BIGINT[]))",
            [ids],
        )
        if found.height:
            e.state.profiles.add_users(found)
        present = set(found["user_id"].to_list())
        return [u for u in ids if u not in present and u in e.state.profiles.users]

    def _clips(self, rows: pl.DataFrame | None) -> list[int]:
        """Add or update the clips still in the store; return those gone."""
        if rows is None:
            return []
        e = self.engine
        ids = _int_keys(rows)
        full = e.store.query(
            "SELECT * FROM clips WHERE item_id IN (SELECT unnest(?::BIGINT[])) ORDER BY item_id",
            [ids],
        )
        if full.height:
            e.state.add_clips(full)
            e.clip_cities.add(full)
        present = set(full["item_id"].to_list())
        known = e.state.catalogue.row_of
        return [i for i in ids if i not in present and i in known]

    def _erased(self, users: list[int], clips: list[int]) -> None:
        """Forget users another worker erased, and sweep the store for anything this worker
        wrote about them before it knew (its fence is closed first, so nothing follows)."""
        e = self.engine
        for n, uid in enumerate(users):
            e.fence.close(uid, timeout_s=30.0)
            forget_erased(e, uid, clips if n == 0 else [])
            swept = erase_user_rows(e.store, uid, key=e.pseudonym_key)
            logger.info(
                "erasure by another worker applied: clips=%d swept_rows=%d",
                len(clips) if n == 0 else 0,
                sum(swept.deleted_rows.values()),
            )
        if clips and not users:
            e.state.forget_clips(clips)
            if e.index is not None:
                e.index.delete(np.asarray(clips, dtype=np.int64))

    def _vectors(self, rows: pl.DataFrame) -> None:
        """Caption vectors written by another worker: into the state, and into this worker's
        index (idempotent on a shared one)."""
        e = self.engine
        caption = rows.filter(pl.col("detail") == CAPTION_SPACE)
        ids = [i for i in _int_keys(caption) if i in e.state.catalogue.row_of]
        if not ids:
            return
        got = e.store.get_vectors(CAPTION_SPACE, np.asarray(ids, dtype=np.int64))
        if got is None or len(got[0]) == 0:
            return
        item_ids, matrix = got
        e.state.set_vectors(item_ids, matrix)
        if e.index is not None:
            clips = e.store.query(
                "SELECT * FROM clips WHERE item_id IN (SELECT unnest(?::BIGINT[])) "
                "ORDER BY item_id",
                [item_ids.tolist()],
            )
            order = {int(i): n for n, i in enumerate(item_ids.tolist())}
            rows_in = [order[int(i)] for i in clips["item_id"].to_list()]
            try:
                e.index.upsert(
                    clips["item_id"].to_numpy().astype(np.int64),
                    {CAPTION_SPACE: matrix[rows_in]},
                    clip_payloads(clips),
                )
            except IndexUnavailableError as exc:  # the reconciler adds what is missing
                logger.warning("followed clips not indexed now: %s", exc)

    def _follows(self, rows: pl.DataFrame) -> None:
        """Follow edges another writer added or removed: as the table holds them now."""
        g = self.engine.state.graph
        pairs = {(int(k), int(d)) for k, d in rows.select("key", "detail").iter_rows()}
        held = self.engine.store.query(
            "SELECT follower_id, followee_id FROM follows "
            "WHERE follower_id IN (SELECT unnest(?::BIGINT[]))",
            [sorted({a for a, _ in pairs})],
        )
        now = set(held.iter_rows())
        for a, b in pairs:
            if (a, b) in now:
                g.add_follows(pl.DataFrame({"follower_id": [a], "followee_id": [b]}))
            else:
                g.remove_follow(a, b)

    def _blocks(self, rows: pl.DataFrame) -> None:
        """Blocks and mutes another writer added (none are ever lifted)."""
        held = self.engine.store.query(
            "SELECT user_id, target_id, kind FROM blocks "
            "WHERE user_id IN (SELECT unnest(?::BIGINT[]))",
            [_int_keys(rows)],
        )
        if held.height:
            self.engine.state.graph.add_blocks(held)


def _int_keys(rows: pl.DataFrame) -> list[int]:
    """The distinct integer keys of change rows, in first-seen order."""
    return list(dict.fromkeys(int(k) for k in rows["key"].to_list()))


def follow_store(engine: Engine) -> StoreFollower | None:
    """Start following the shared store for ``engine`` (``None``: its store is not followed,
    e.g. the embedded DuckDB file). The follower stops when the engine closes."""
    if engine.follow_from is None:
        return None
    follower = StoreFollower(
        engine.store,
        origin=engine.origin,
        start=engine.follow_from,
        apply_events=engine.apply_followed_events,
        apply_changes=ChangeApplier(engine),
        settings=engine.settings.follow,
        telemetry=engine.telemetry,
    )
    engine.health_checks["follow"] = follower.state
    engine.on_close.append(follower.close)
    follower.start()
    return follower
