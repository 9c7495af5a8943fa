"""Moods: what a user asks the feed for right now ("something calm, nature, no news").

A mood is parsed by :func:`steering.prompt_parser.parse_mood`, stored in the ``moods`` table
and compiled once, at creation, into concept scores (:mod:`steering.concepts`): one per facet,
exclusion, "less of" and "only" phrase. The feed reads the compiled moods from memory, so a new
mood changes the very next page and costs the request only lookups and one ANN search per facet.

Scopes: a ``session`` mood lasts ``expires_in_s`` from the prompt ("for tonight") or
:attr:`MoodSettings.session_ttl_s`; a ``standing`` mood lasts until it is deleted (or until the
prompt's own expiry).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from features.embedding import TextEmbedder
from ranking.state import FeedState
from steering.concepts import ConceptIndex, ConceptScores
from steering.errors import SteeringError
from steering.prompt_parser import MAX_PROMPT_CHARS, ParsedMood, parse_mood
from storage.errors import UnknownEntityError
from storage.store import Store

logger = logging.getLogger(__name__)

Scope = Literal["session", "standing"]
SCOPES: tuple[str, ...] = ("session", "standing")


class UnknownMoodError(SteeringError, UnknownEntityError):
    """A mood id the user does not have (the API answers 404)."""


class MoodSettings(BaseModel):
    """Mood behaviour."""

    model_config = ConfigDict(extra="forbid")

    session_ttl_s: int = Field(default=3 * 3600, ge=60)
    # How much a mood outweighs the person's usual ranking (tuned on the benchmark's tuning
    # set: compliance@10 0.718 at 0.75, 0.739 at 0.9 with the stronger negation demotion).
    default_strength: float = Field(default=0.9, ge=0.0, le=1.0)
    max_active: int = Field(default=5, ge=1)
    max_chars: int = Field(default=MAX_PROMPT_CHARS, ge=1)


@dataclass
class CompiledMood:
    """A mood ready for the request path: concept scores per phrase, the energy target."""

    mood_id: str
    text: str
    strength: float
    facets: list[ConceptScores] = field(default_factory=list)
    exclusions: list[ConceptScores] = field(default_factory=list)
    less: list[ConceptScores] = field(default_factory=list)
    restrict_to: list[ConceptScores] = field(default_factory=list)
    energy: float | None = None
    maturity_max: int | None = None


@dataclass
class Mood:
    """One stored mood and how its prompt was understood."""

    mood_id: str
    user_id: int
    text: str
    parsed: ParsedMood
    scope: str
    strength: float
    created_at: datetime
    expires_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the API's response body)."""
        return {
            "mood_id": self.mood_id,
            "user_id": self.user_id,
            "text": self.text,
            "scope": self.scope,
            "strength": self.strength,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "understood": self.parsed.to_dict(),
            "warnings": list(self.parsed.warnings),
        }

    def active_at(self, now: datetime) -> bool:
        """Whether the mood applies at ``now``."""
        return self.expires_at is None or self.expires_at > now


CompiledMoods = list[CompiledMood]
Moods = list[Mood]


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class MoodService:
    """Create, list and delete moods; compile them for the feed.

    Parameters
    ----------
    store
        Where moods are persisted (``moods`` table, migration 3).
    state
        The serving state (catalogue rows the concepts are scored over).
    embedder
        Returns the cached text embedder.
    concepts
        A shared concept index (one is made when omitted).
    settings
        Mood behaviour.
    """

    def __init__(
        self,
        store: Store,
        state: FeedState,
        embedder: Callable[[], TextEmbedder],
        *,
        concepts: ConceptIndex | None = None,
        settings: MoodSettings | None = None,
    ) -> None:
        self.store = store
        self.state = state
        self.concepts = concepts or ConceptIndex(state, embedder)
        self.settings = settings or MoodSettings()
        self._lock = threading.Lock()
        self._by_user: dict[int, list[Mood]] = {}
        self._compiled: dict[str, CompiledMood] = {}
        self._pending: dict[str, Future[CompiledMood]] = {}
        # Moods created with expand=False whose expansion has not been started yet.
        self._deferred: dict[str, Mood] = {}
        self._compiler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mood-compile")
        self._load()

    def _load(self) -> None:
        for mood in self._read():
            self._by_user.setdefault(mood.user_id, []).append(mood)

    def _read(self, user_id: int | None = None) -> list[Mood]:
        """The active moods in the store (of one user, or everyone's), oldest first."""
        df = self.store.query(
            "SELECT mood_id, user_id, text, parsed, scope, strength, created_at, expires_at "
            "FROM moods WHERE deleted_at IS NULL AND (expires_at IS NULL OR expires_at > ?)"
            " AND (CAST(? AS BIGINT) IS NULL OR user_id = ?) ORDER BY created_at",
            [_utcnow(), user_id, user_id],
        )
        out: list[Mood] = []
        for row in df.iter_rows(named=True):
            mood = Mood(
                mood_id=row["mood_id"],
                user_id=int(row["user_id"]),
                text=row["text"],
                parsed=_parsed_from_json(row["parsed"]),
                scope=row["scope"],
                strength=float(row["strength"]),
                created_at=row["created_at"],
                expires_at=row["expires_at"],
            )
            out.append(mood)
        return out

    def reload_user(self, user_id: int) -> None:
        """Reread a user's moods from the store (another worker changed them)."""
        moods = self._read(user_id)
        with self._lock:
            gone = {m.mood_id for m in self._by_user.get(user_id, [])} - {m.mood_id for m in moods}
            for mood_id in gone:
                self._compiled.pop(mood_id, None)
                self._deferred.pop(mood_id, None)
            if moods:
                self._by_user[user_id] = moods
            else:
                self._by_user.pop(user_id, None)

    # -- writes -------------------------------------------------------------------------------
    def create(
        self,
        user_id: int,
        text: str,
        *,
        scope: str = "session",
        strength: float | None = None,
        now: datetime | None = None,
        expand: bool = True,
    ) -> Mood:
        """Parse, store and compile a mood; it applies from the next page on.

        The mood is committed before this returns; its expansion into concept scores runs in
        the background. ``expand=False`` leaves the expansion to :meth:`expand` (the API calls
        it once the response is sent, so answering the prompt does not compete with its own
        expansion for the CPU); a page that comes first starts it itself.

        Raises
        ------
        MoodParseError
            Empty or unusable text (:class:`MoodTooLongError` when over the limit).
        SteeringError
            An unknown scope.
        """
        if scope not in SCOPES:
            msg = f"unknown mood scope {scope!r}; valid: {', '.join(SCOPES)}"
            raise SteeringError(msg)
        parsed = parse_mood(
            text, max_chars=self.settings.max_chars, vocabulary=self.concepts.vocabulary()
        )
        now = now or _utcnow()
        ttl = parsed.expires_in_s
        if ttl is None and scope == "session":
            ttl = self.settings.session_ttl_s
        mood = Mood(
            mood_id=uuid.uuid4().hex[:12],
            user_id=user_id,
            text=parsed.text,
            parsed=parsed,
            scope=scope,
            strength=self.settings.default_strength if strength is None else float(strength),
            created_at=now,
            expires_at=now + timedelta(seconds=ttl) if ttl is not None else None,
        )
        # Committed before the 201 goes out, ahead of any event batch or impressions flush
        # waiting for the write lock (it waits only for the write in progress).
        with self.store.short_write() as cur:
            cur.execute(
                "INSERT INTO moods (mood_id, user_id, text, parsed, scope, strength, created_at, "
                "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    mood.mood_id,
                    user_id,
                    mood.text,
                    json.dumps(parsed.to_dict()),
                    scope,
                    mood.strength,
                    now,
                    mood.expires_at,
                ],
            )
        # Expanding a phrase never seen before costs a pass over the whole catalogue (seconds
        # at a million clips): it runs in the background, so the prompt is answered at once
        # with how it was understood, and the next page waits for it only if it comes first.
        # Started after the insert, so the expansion does not compete with it for the CPU.
        with self._lock:
            self._deferred[mood.mood_id] = mood
            if expand:
                self._start_expansion(mood.mood_id)
            moods = [m for m in self._by_user.get(user_id, []) if m.active_at(now)]
            moods.append(mood)
            # Oldest moods beyond the cap stop applying (they stay in the DB, marked deleted).
            dropped = moods[: -self.settings.max_active]
            self._by_user[user_id] = moods[-self.settings.max_active :]
            for m in dropped:
                self._compiled.pop(m.mood_id, None)
                self._deferred.pop(m.mood_id, None)
        if dropped:
            # Already out of memory, so not through delete() (which would not find them).
            self._mark_deleted(user_id, [m.mood_id for m in dropped])
        logger.info(
            "mood created mood=%s scope=%s facets=%d exclusions=%d evicted=%d",
            mood.mood_id,
            scope,
            len(parsed.facets),
            len(parsed.exclusions),
            len(dropped),
        )
        return mood

    def expand(self, mood_id: str) -> None:
        """Start the background expansion of a mood created with ``expand=False`` (nothing
        when it was started already or the mood is gone)."""
        with self._lock:
            self._start_expansion(mood_id)

    def _start_expansion(self, mood_id: str) -> None:
        """Queue a deferred mood's expansion (call with ``self._lock`` held)."""
        mood = self._deferred.pop(mood_id, None)
        if mood is not None:
            self._pending[mood_id] = self._compiler.submit(self._compile, mood)

    def _mark_deleted(self, user_id: int, mood_ids: list[str]) -> None:
        with self.store.write() as cur:
            for mood_id in mood_ids:
                cur.execute(
                    "UPDATE moods SET deleted_at = ? WHERE mood_id = ? AND user_id = ?",
                    [_utcnow(), mood_id, user_id],
                )

    def delete(self, user_id: int, mood_id: str) -> None:
        """Stop a mood; the next page no longer follows it.

        Raises
        ------
        UnknownMoodError
            The user has no such active mood.
        """
        with self._lock:
            moods = self._by_user.get(user_id, [])
            keep = [m for m in moods if m.mood_id != mood_id]
            if len(keep) == len(moods):
                msg = f"user {user_id} has no active mood {mood_id!r}; list them with GET .../mood"
                raise UnknownMoodError(msg)
            self._by_user[user_id] = keep
            self._compiled.pop(mood_id, None)
            self._deferred.pop(mood_id, None)
        self._mark_deleted(user_id, [mood_id])

    def clear(self, user_id: int) -> int:
        """Delete every active mood of a user; return how many."""
        ids = [m.mood_id for m in self.list(user_id)]
        for mid in ids:
            self.delete(user_id, mid)
        return len(ids)

    # -- reads --------------------------------------------------------------------------------
    def list(self, user_id: int, *, now: datetime | None = None) -> Moods:
        """The user's active moods, oldest first."""
        now = now or _utcnow()
        with self._lock:
            return [m for m in self._by_user.get(user_id, []) if m.active_at(now)]

    def active(self, user_id: int, *, now: datetime | None = None) -> CompiledMoods:
        """Compiled active moods of a user (what the feed applies)."""
        out: CompiledMoods = []
        for m in self.list(user_id, now=now):
            compiled = self._compiled.get(m.mood_id)
            if compiled is None:
                with self._lock:
                    self._start_expansion(m.mood_id)  # when the API has not started it yet
                    pending = self._pending.get(m.mood_id)
                # A mood posted a moment ago: wait for its background compile.
                compiled = pending.result() if pending is not None else self._compile(m)
            out.append(compiled)
        return out

    def wait_compiled(self, timeout_s: float | None = None) -> None:
        """Block until every mood posted so far is compiled (tests, benchmarks)."""
        with self._lock:
            for mood_id in list(self._deferred):
                self._start_expansion(mood_id)
            pending = list(self._pending.values())
        for f in pending:
            f.result(timeout=timeout_s)

    def _compile(self, mood: Mood) -> CompiledMood:
        p = mood.parsed
        c = self.concepts
        compiled = CompiledMood(
            mood_id=mood.mood_id,
            text=mood.text,
            strength=mood.strength,
            facets=[c.scores(f) for f in p.facets],
            exclusions=[c.negated(f) for f in p.exclusions],
            less=[c.scores(f) for f in p.less],
            restrict_to=[c.scores(f) for f in p.restrict_to],
            energy=p.energy,
            maturity_max=p.maturity_max,
        )
        with self._lock:
            self._compiled[mood.mood_id] = compiled
            self._pending.pop(mood.mood_id, None)
        return compiled


def _parsed_from_json(raw: str) -> ParsedMood:
    return ParsedMood.from_dict(json.loads(raw))
