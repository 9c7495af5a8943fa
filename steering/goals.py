"""Long-term goals in plain words: "get fit", "learn to cook", "see more of my friends".

A goal is a standing intent, not a quota: the home feed serves it in a bounded share of each page
(:class:`steering.selectors.goal_share.GoalShareSelector`; ``GoalSettings.share``, 20% by
default), and only with clips that are about it; the rest of the page stays the person's own
mix. Each clip placed for a goal says so (``rules_applied``: ``goal:<id>:<text>``; ``why``:
"toward your goal ..."). Progress is shown back: clips watched toward the goal since it was set
(for a friends goal: clips by friends and distinct friends seen).

Two kinds:

- **connect**: the sentence is about friends or family ("see more of my friends", "stay in touch
  with family"): clips made by the people the person follows back;
- **topic**: anything else; the sentence minus its goal words ("I want to", "learn to", "get
  better at") is scored like a mood phrase over the catalogue
  (:class:`~steering.concepts.ConceptIndex`).

"Just let me scroll" (or "no goals") is a valid choice: it removes every goal.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ranking.state import FeedState
from steering.concepts import ConceptIndex, ConceptScores
from steering.errors import SteeringError
from storage.errors import UnknownEntityError
from storage.store import Store

logger = logging.getLogger(__name__)

MAX_GOAL_TEXT = 120
MAX_GOALS_PER_USER = 3


class GoalError(SteeringError):
    """A goal sentence that cannot be used (the API answers 422 saying what to write)."""


class UnknownGoalError(SteeringError, UnknownEntityError):
    """A goal id the user does not have (404)."""


class GoalSettings(BaseModel):
    """How goals are served."""

    model_config = ConfigDict(extra="forbid")

    share: float = Field(default=0.2, ge=0.0, le=0.5, description="largest share of a page")
    threshold: float = Field(
        default=2.0, description="concept z-score from which a clip is about a topic goal"
    )
    source_limit: int = Field(default=60, ge=0, le=1000)


_NO_GOALS = re.compile(
    r"^\s*(just\s+let\s+me\s+scroll|no\s+goals?|none|nothing|no\s+goal\s+please)\W*$", re.I
)
_CONNECT = re.compile(r"\b(friends?|family|mates|people i (?:know|follow))\b", re.I)
# Goal words, cut from the front of a topic goal ("I want to learn to cook" -> "cook").
_LEAD = re.compile(
    r"^(?:(?:i\s+(?:want|would\s+like|wanna|need|'d\s+like)\s+to|help\s+me|my\s+goal\s+is\s+to|"
    r"to|please)\s+)*(?:(?:learn(?:\s+(?:to|about|how\s+to))?|get\s+(?:better\s+at|into|more)|"
    r"become\s+(?:a|an|better\s+at)?|be\s+(?:more|better\s+at)|improve\s+(?:my|at)?|"
    r"start|practi[cs]e|study|read\s+more\s+about|know\s+more\s+about|get|do\s+more)\s+)?",
    re.I,
)


@dataclass(frozen=True)
class Goal:
    """One goal of a person and how it was read."""

    goal_id: str
    user_id: int
    text: str
    kind: str  # "connect" or "topic"
    phrase: str  # what a topic goal is about (empty for connect)
    created_at: datetime

    @property
    def label(self) -> str:
        """How ``rules_applied`` names the goal."""
        return f"goal:{self.goal_id}:{self.text}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "goal_id": self.goal_id,
            "text": self.text,
            "understood": {"kind": self.kind, "about": self.phrase or "your friends"},
            "created_at": self.created_at.isoformat(),
        }


@dataclass
class ActiveGoal:
    """A goal ready for a page: which catalogue rows serve it."""

    goal: Goal
    scores: ConceptScores | None  # topic goals


def read_goal(text: str) -> tuple[str, str] | None:
    """``(kind, phrase)`` of a goal sentence, or ``None`` for "just let me scroll".

    Raises
    ------
    GoalError
        Empty, too long, or nothing left to be about.
    """
    t = " ".join(text.split())
    if not t:
        msg = "write a goal, e.g. 'get fit', 'learn to cook' or 'see more of my friends'"
        raise GoalError(msg)
    if len(t) > MAX_GOAL_TEXT:
        msg = f"a goal is at most {MAX_GOAL_TEXT} characters"
        raise GoalError(msg)
    if _NO_GOALS.match(t):
        return None
    if _CONNECT.search(t):
        return "connect", ""
    phrase = _LEAD.sub("", t.lower(), count=1).strip(" .!,;")
    if len(re.sub(r"\W", "", phrase)) < 3:
        msg = f"'{t}' does not say what the goal is about; e.g. 'learn to cook' or 'get fit'"
        raise GoalError(msg)
    return "topic", phrase


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class GoalService:
    """Set, list and remove goals (table ``goals``); compile them for the home feed."""

    def __init__(
        self,
        store: Store,
        state: FeedState,
        concepts: ConceptIndex,
        settings: GoalSettings | None = None,
    ) -> None:
        self.store = store
        self.state = state
        self.concepts = concepts
        self.settings = settings or GoalSettings()
        self._lock = threading.Lock()
        self._by_user: dict[int, list[Goal]] = {}
        for g in self._read():
            self._by_user.setdefault(g.user_id, []).append(g)

    def _read(self, user_id: int | None = None) -> list[Goal]:
        """The goals in the store (of one user, or everyone's), oldest first."""
        df = self.store.query(
            "SELECT goal_id, user_id, text, kind, phrase, created_at FROM goals "
            "WHERE deleted_at IS NULL AND (CAST(? AS BIGINT) IS NULL OR user_id = ?) "
            "ORDER BY created_at",
            [user_id, user_id],
        )
        return [Goal(**{**r, "user_id": int(r["user_id"])}) for r in df.iter_rows(named=True)]

    def reload_user(self, user_id: int) -> None:
        """Reread a person's goals from the store (another worker changed them)."""
        goals = self._read(user_id)
        with self._lock:
            if goals:
                self._by_user[user_id] = goals
            else:
                self._by_user.pop(user_id, None)

    def set(self, user_id: int, text: str, *, now: datetime | None = None) -> Goal | None:
        """Save a goal (``None``: "just let me scroll", every goal removed).

        Raises
        ------
        GoalError
            The sentence cannot be used, or the person has the most goals allowed.
        """
        read = read_goal(text)
        now = now or _utcnow()
        if read is None:
            for g in self.goals_of(user_id):
                self.remove(user_id, g.goal_id, now=now)
            return None
        kind, phrase = read
        if len(self.goals_of(user_id)) >= MAX_GOALS_PER_USER:
            msg = f"at most {MAX_GOALS_PER_USER} goals; remove one first"
            raise GoalError(msg)
        goal = Goal(uuid.uuid4().hex[:12], user_id, " ".join(text.split()), kind, phrase, now)
        with self.store.write() as cur:
            cur.execute(
                "INSERT INTO goals (goal_id, user_id, text, kind, phrase, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [goal.goal_id, user_id, goal.text, kind, phrase, now],
            )
        with self._lock:
            self._by_user.setdefault(user_id, []).append(goal)
        logger.info("goal set goal=%s kind=%s", goal.goal_id, kind)  # never the sentence
        return goal

    def remove(self, user_id: int, goal_id: str, *, now: datetime | None = None) -> None:
        """Remove a goal (404 when the person has no such goal)."""
        if not any(g.goal_id == goal_id for g in self.goals_of(user_id)):
            msg = f"user {user_id} has no goal {goal_id!r}; list them with GET .../goals"
            raise UnknownGoalError(msg)
        with self.store.write() as cur:
            cur.execute(
                "UPDATE goals SET deleted_at = ? WHERE goal_id = ? AND user_id = ?",
                [now or _utcnow(), goal_id, user_id],
            )
        with self._lock:
            self._by_user[user_id] = [
                g for g in self._by_user.get(user_id, []) if g.goal_id != goal_id
            ]

    def forget_user(self, user_id: int) -> None:
        """Drop the person's goals from memory (the erasure deletes their rows)."""
        with self._lock:
            self._by_user.pop(user_id, None)

    def goals_of(self, user_id: int) -> list[Goal]:
        """The person's goals, oldest first."""
        with self._lock:
            return list(self._by_user.get(user_id, []))

    def active(self, user_id: int) -> list[ActiveGoal]:
        """The person's goals with their concept scores (cached per phrase by the index)."""
        return [
            ActiveGoal(g, self.concepts.scores(g.phrase) if g.kind == "topic" else None)
            for g in self.goals_of(user_id)
        ]

    def serves(self, goal: ActiveGoal, user_id: int, rows: np.ndarray) -> np.ndarray:
        """Which catalogue ``rows`` serve ``goal`` (``-1``: unknown clip, never)."""
        ok = rows >= 0
        out = np.zeros(len(rows), dtype=bool)
        if goal.scores is not None:
            out[ok] = goal.scores.at(rows[ok]) >= self.settings.threshold
            return out
        friends = self.state.graph.friends(user_id)
        if not friends:
            return out
        cat = self.state.catalogue
        authors = cat.author[rows[ok]]
        out[ok] = np.isin(authors, np.fromiter(friends, dtype=np.int64, count=len(friends)))
        return out

    def progress(self, user_id: int) -> list[dict[str, Any]]:
        """Per goal: clips watched toward it since it was set (friends goals: clips by friends
        and distinct friends seen)."""
        active = self.active(user_id)
        if not active:
            return []
        # One read of the views since the oldest goal was set; each goal counts from its own.
        views = self.store.query(
            "SELECT item_id, max(received_at) AS last_at FROM events WHERE user_id = ? "
            "AND event_type = 'view' AND received_at >= ? AND item_id IS NOT NULL GROUP BY 1",
            [user_id, min(ag.goal.created_at for ag in active)],
        )
        row_of = self.state.catalogue.row_of
        all_rows = np.fromiter(
            (row_of.get(int(i), -1) for i in views["item_id"].to_list()), np.int64, views.height
        )
        out = []
        for ag in active:
            g = ag.goal
            since = (views["last_at"] >= g.created_at).to_numpy()
            rows = all_rows[since]
            hit = self.serves(ag, user_id, rows)
            item: dict[str, Any] = {**g.to_dict(), "clips_watched": int(hit.sum())}
            if g.kind == "connect":
                authors = self.state.catalogue.author[rows[hit]] if hit.any() else []
                item["friends_seen"] = len({int(a) for a in authors})
            out.append(item)
        return out
