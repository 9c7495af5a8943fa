"""Standing rules in plain words: a sentence a user saves once and every page follows.

"never horror after 21:00", "from @chef_ana only recipes", "less politics", "no 📰": a rule is
read by the mood-prompt parser (:func:`steering.prompt_parser.parse_mood`, emoji and typo
correction included) after two parts of its own are cut out:

- a **creator** (``from @chef_ana``, ``by @42``, or a bare ``@chef_ana``): the rule then acts on
  that creator's clips only ("per account"). ``@<digits>`` is a creator id; another name is
  looked up in creators' profile settings (``settings.handle``);
- a **time of day** (``after 21:00``, ``before 7am``, ``between 22 and 6``), in the user's own
  time zone (``users.timezone``); outside the window the rule rests.

What is left says what to do: exclusions ("never horror") remove matching clips, "only X"
removes the clips that are not X, "less X" sinks X, a positive topic lifts it and an age
setting ("family friendly") caps maturity. A rule that says none of these is refused with a
message saying what to write. Rules live in the ``standing_rules`` table (migration 12), are
compiled once into concept scores when saved, and apply to every page until deleted; each clip
a rule acts on names it in ``rules_applied`` (``rule:<id>:<text>``).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ranking.state import FeedState
from steering.concepts import ConceptIndex, ConceptScores
from steering.errors import MoodParseError, SteeringError
from steering.prompt_parser import ParsedMood, parse_mood
from storage.errors import UnknownEntityError
from storage.store import Store

logger = logging.getLogger(__name__)

MAX_RULE_TEXT = 200
"""Longest rule sentence, in characters."""
MAX_RULES_PER_USER = 50


class RuleError(SteeringError):
    """A rule sentence that cannot be used (the API answers 422 with what to write instead)."""


class UnknownRuleError(SteeringError, UnknownEntityError):
    """A rule id the user does not have (the API answers 404)."""


_EXAMPLES = "e.g. 'never horror after 21:00' or 'from @chef_ana only recipes'"
_AUTHOR_RE = re.compile(r"(?:\b(?:from|by)\s+)?@([a-z0-9_.]{1,40})", re.IGNORECASE)
_CLOCK = r"(\d{1,2})(?:[:.h](\d{2}))?\s*(am|pm|h)?"
_BETWEEN_RE = re.compile(rf"\bbetween\s+{_CLOCK}\s+(?:and|-)\s+{_CLOCK}", re.IGNORECASE)
_AFTER_RE = re.compile(rf"\b(?:after|past|from)\s+{_CLOCK}(?=\s|$|[,;.!])", re.IGNORECASE)
_BEFORE_RE = re.compile(rf"\b(?:before|until|till)\s+{_CLOCK}(?=\s|$|[,;.!])", re.IGNORECASE)


@dataclass(frozen=True)
class RuleScope:
    """Where a rule acts: one creator (``None``: every creator) and a daily time window in
    minutes after local midnight (``None``: all day; ``start > end`` wraps past midnight)."""

    author_id: int | None = None
    author_ref: str | None = None
    start_min: int | None = None
    end_min: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``"21:00"`` style times)."""
        return {
            "author_id": self.author_id,
            "author": f"@{self.author_ref}" if self.author_ref else None,
            "after": _fmt(self.start_min),
            "before": _fmt(self.end_min),
        }

    def active_at(self, minute_of_day: int) -> bool:
        """Whether the window holds ``minute_of_day`` (local time)."""
        start, end = self.start_min, self.end_min
        if start is None and end is None:
            return True
        if start is None:
            return minute_of_day < (end or 0)
        if end is None:
            return minute_of_day >= start
        if start <= end:
            return start <= minute_of_day < end
        return minute_of_day >= start or minute_of_day < end


def _fmt(minutes: int | None) -> str | None:
    return None if minutes is None else f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass
class Rule:
    """One saved rule and how it was understood."""

    rule_id: str
    user_id: int
    text: str
    parsed: ParsedMood
    scope: RuleScope
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the API's response body): the sentence and how it was read."""
        p = self.parsed
        return {
            "rule_id": self.rule_id,
            "text": self.text,
            "understood": {
                "never": list(p.exclusions),
                "only": list(p.restrict_to),
                "less": list(p.less),
                "more": list(p.facets),
                "maturity_max": p.maturity_max,
                **self.scope.to_dict(),
            },
            "warnings": list(p.warnings),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }

    @property
    def label(self) -> str:
        """How ``rules_applied`` and "why not" name the rule."""
        return f"rule:{self.rule_id}:{self.text}"


@dataclass
class CompiledRule:
    """A rule ready for the request path: concept scores per phrase, its scope."""

    rule_id: str
    label: str
    scope: RuleScope
    never: list[ConceptScores] = field(default_factory=list)
    only: list[ConceptScores] = field(default_factory=list)
    less: list[ConceptScores] = field(default_factory=list)
    more: list[ConceptScores] = field(default_factory=list)
    maturity_max: int | None = None


CompiledRules = list[CompiledRule]


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _clock(hour: str, minute: str | None, suffix: str | None) -> int:
    h, m = int(hour), int(minute or 0)
    suffix = (suffix or "").lower()
    if suffix == "pm" and h < 12:
        h += 12
    elif suffix == "am" and h == 12:
        h = 0
    if not (0 <= h <= 24 and 0 <= m < 60) or (h == 24 and m):
        msg = f"{hour}:{minute or '00'} is not a time of day; write times like 21:00 or 9pm"
        raise RuleError(msg)
    return (h % 24) * 60 + m


def split_rule(text: str) -> tuple[str, str | None, int | None, int | None]:
    """Cut the creator and the time window out of a rule sentence.

    Returns the rest of the sentence, the creator reference (without ``@``), and the window's
    start and end in minutes after midnight (``None`` where not said).

    Raises
    ------
    RuleError
        Two creators, or a time that is not a time of day.
    """
    authors = _AUTHOR_RE.findall(text)
    if len(set(a.lower() for a in authors)) > 1:
        msg = "a rule names one creator; save one rule per creator"
        raise RuleError(msg)
    rest = _AUTHOR_RE.sub(" , ", text)
    start = end = None
    m = _BETWEEN_RE.search(rest)
    if m:
        start, end = _clock(*m.group(1, 2, 3)), _clock(*m.group(4, 5, 6))
        rest = rest[: m.start()] + " , " + rest[m.end() :]
    else:
        m = _AFTER_RE.search(rest)
        if m:
            start = _clock(*m.group(1, 2, 3))
            rest = rest[: m.start()] + " , " + rest[m.end() :]
        m = _BEFORE_RE.search(rest)
        if m:
            end = _clock(*m.group(1, 2, 3))
            rest = rest[: m.start()] + " , " + rest[m.end() :]
    ref = authors[0].lower() if authors else None
    return re.sub(r"\s+", " ", rest).strip(" ,"), ref, start, end


class RuleService:
    """Save, list, change and delete standing rules; compile them for the feed.

    Parameters
    ----------
    store
        Where rules persist (``standing_rules``, migration 12).
    state
        The serving state (creators, profiles and time zones).
    concepts
        The shared concept index (rules are scored like mood phrases).
    """

    def __init__(self, store: Store, state: FeedState, concepts: ConceptIndex) -> None:
        self.store = store
        self.state = state
        self.concepts = concepts
        self._lock = threading.Lock()
        self._by_user: dict[int, list[Rule]] = {}
        self._compiled: dict[str, CompiledRule] = {}
        self._load()

    def _load(self) -> None:
        for rule in self._read():
            self._by_user.setdefault(rule.user_id, []).append(rule)

    def _read(self, user_id: int | None = None) -> list[Rule]:
        """The standing rules in the store (of one user, or everyone's), oldest first."""
        df = self.store.query(
            "SELECT rule_id, user_id, text, parsed, author_id, author_ref, start_min, end_min, "
            "created_at, updated_at FROM standing_rules WHERE deleted_at IS NULL "
            "AND (CAST(? AS BIGINT) IS NULL OR user_id = ?) ORDER BY created_at",
            [user_id, user_id],
        )
        out: list[Rule] = []
        for row in df.iter_rows(named=True):
            rule = Rule(
                rule_id=row["rule_id"],
                user_id=int(row["user_id"]),
                text=row["text"],
                parsed=_parsed_from_json(row["parsed"]),
                scope=RuleScope(
                    author_id=row["author_id"],
                    author_ref=row["author_ref"],
                    start_min=row["start_min"],
                    end_min=row["end_min"],
                ),
                created_at=row["created_at"],
                updated_at=row["updated_at"],
            )
            out.append(rule)
        return out

    def reload_user(self, user_id: int) -> None:
        """Reread a user's rules from the store (another worker changed them); an edited
        rule is compiled again."""
        rules = self._read(user_id)
        with self._lock:
            for r in self._by_user.get(user_id, []):
                self._compiled.pop(r.rule_id, None)
            if rules:
                self._by_user[user_id] = rules
            else:
                self._by_user.pop(user_id, None)

    # -- reading a sentence -------------------------------------------------------------------
    def understand(self, text: str) -> tuple[str, ParsedMood, RuleScope]:
        """Read a rule sentence (nothing is saved).

        Raises
        ------
        RuleError
            Empty, too long, an unknown creator, a bad time, or nothing to apply.
        """
        stripped = " ".join(text.split())
        if not stripped:
            msg = f"a rule is empty; write what the feed should always do, {_EXAMPLES}"
            raise RuleError(msg)
        if len(stripped) > MAX_RULE_TEXT:
            msg = f"a rule is at most {MAX_RULE_TEXT} characters; this one is {len(stripped)}"
            raise RuleError(msg)
        rest, ref, start, end = split_rule(stripped)
        author_id = self._resolve_author(ref) if ref is not None else None
        if not rest:
            msg = f"the rule says who or when but not what to do; {_EXAMPLES}"
            raise RuleError(msg)
        try:
            parsed = parse_mood(rest, vocabulary=self.concepts.vocabulary())
        except MoodParseError as exc:
            msg = f"{exc}; {_EXAMPLES}"
            raise RuleError(msg) from exc
        if not (parsed.exclusions or parsed.restrict_to or parsed.less or parsed.facets) and (
            parsed.maturity_max is None
        ):
            msg = (
                f"found nothing to apply in {rest!r}: a rule needs a topic to never show, show "
                f"only, show less or more of, or an age setting; {_EXAMPLES}"
            )
            raise RuleError(msg)
        scope = RuleScope(author_id=author_id, author_ref=ref, start_min=start, end_min=end)
        return stripped, parsed, scope

    def _resolve_author(self, ref: str) -> int:
        if ref.isdigit():
            uid = int(ref)
            if uid in self.state.profiles.users or uid in self.state.profiles.by_user:
                return uid
            msg = f"no creator with id @{ref}; use a creator's id or handle"
            raise RuleError(msg)
        for uid, profile in list(self.state.profiles.by_user.items()):
            handle = str((profile.get("settings") or {}).get("handle", "")).lower().lstrip("@")
            if handle == ref:
                return int(uid)
        msg = f"no creator with the handle @{ref}; check the spelling or use the creator's id"
        raise RuleError(msg)

    # -- writes -------------------------------------------------------------------------------
    def create(self, user_id: int, text: str, *, now: datetime | None = None) -> Rule:
        """Save a rule; it applies from the next page on.

        Raises
        ------
        RuleError
            The sentence cannot be used, or the user already has the most rules allowed.
        """
        stripped, parsed, scope = self.understand(text)
        with self._lock:
            if len(self._by_user.get(user_id, [])) >= MAX_RULES_PER_USER:
                msg = f"at most {MAX_RULES_PER_USER} rules; delete one first"
                raise RuleError(msg)
        now = now or _utcnow()
        rule = Rule(uuid.uuid4().hex[:12], user_id, stripped, parsed, scope, now, now)
        self._compile(rule)
        with self.store.write() as cur:
            cur.execute(
                "INSERT INTO standing_rules (rule_id, user_id, text, parsed, author_id, "
                "author_ref, start_min, end_min, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    rule.rule_id, user_id, rule.text, json.dumps(parsed.to_dict()),
                    scope.author_id, scope.author_ref, scope.start_min, scope.end_min, now, now,
                ],
            )  # fmt: skip
        with self._lock:
            self._by_user.setdefault(user_id, []).append(rule)
        # Counts only: the sentence is the user's own.
        logger.info(
            "standing rule saved rule=%s scoped=%s", rule.rule_id, scope.author_id is not None
        )
        return rule

    def update(self, user_id: int, rule_id: str, text: str, *, now: datetime | None = None) -> Rule:
        """Replace a rule's sentence (read again, compiled again).

        Raises
        ------
        UnknownRuleError
            The user has no such rule.
        RuleError
            The new sentence cannot be used (the old one stays).
        """
        old = self.get(user_id, rule_id)
        stripped, parsed, scope = self.understand(text)
        now = now or _utcnow()
        rule = Rule(rule_id, user_id, stripped, parsed, scope, old.created_at, now)
        self._compile(rule)
        with self.store.write() as cur:
            cur.execute(
                "UPDATE standing_rules SET text = ?, parsed = ?, author_id = ?, author_ref = ?, "
                "start_min = ?, end_min = ?, updated_at = ? WHERE rule_id = ? AND user_id = ?",
                [
                    rule.text, json.dumps(parsed.to_dict()), scope.author_id, scope.author_ref,
                    scope.start_min, scope.end_min, now, rule_id, user_id,
                ],
            )  # fmt: skip
        with self._lock:
            self._by_user[user_id] = [
                rule if r.rule_id == rule_id else r for r in self._by_user.get(user_id, [])
            ]
        return rule

    def delete(self, user_id: int, rule_id: str) -> None:
        """Remove a rule; the next page no longer follows it.

        Raises
        ------
        UnknownRuleError
            The user has no such rule.
        """
        self.get(user_id, rule_id)
        with self.store.write() as cur:
            cur.execute(
                "UPDATE standing_rules SET deleted_at = ? WHERE rule_id = ? AND user_id = ?",
                [_utcnow(), rule_id, user_id],
            )
        with self._lock:
            self._by_user[user_id] = [
                r for r in self._by_user.get(user_id, []) if r.rule_id != rule_id
            ]
            self._compiled.pop(rule_id, None)

    def forget_user(self, user_id: int) -> None:
        """Drop from memory the user's rules and every rule about them as a creator (their
        rows are deleted by the erasure: ``user_id`` and ``author_id`` name them)."""
        with self._lock:
            gone = [r.rule_id for r in self._by_user.pop(user_id, [])]
            for uid, rules in list(self._by_user.items()):
                gone += [r.rule_id for r in rules if r.scope.author_id == user_id]
                self._by_user[uid] = [r for r in rules if r.scope.author_id != user_id]
            for rule_id in gone:
                self._compiled.pop(rule_id, None)

    # -- reads --------------------------------------------------------------------------------
    def list(self, user_id: int) -> list[Rule]:
        """The user's rules, oldest first."""
        with self._lock:
            return list(self._by_user.get(user_id, []))

    def get(self, user_id: int, rule_id: str) -> Rule:
        """One rule of the user.

        Raises
        ------
        UnknownRuleError
            The user has no such rule.
        """
        for r in self.list(user_id):
            if r.rule_id == rule_id:
                return r
        msg = f"user {user_id} has no rule {rule_id!r}; list them with GET .../controls/rules"
        raise UnknownRuleError(msg)

    def active(self, user_id: int, *, now: datetime | None = None) -> CompiledRules:
        """The compiled rules whose time window holds ``now`` in the user's time zone."""
        rules = self.list(user_id)
        if not rules:
            return []
        minute = _local_minute(self.state, user_id, now or _utcnow())
        out: CompiledRules = []
        for r in rules:
            if not r.scope.active_at(minute):
                continue
            compiled = self._compiled.get(r.rule_id) or self._compile(r)
            out.append(compiled)
        return out

    def _compile(self, rule: Rule) -> CompiledRule:
        p, c = rule.parsed, self.concepts
        compiled = CompiledRule(
            rule_id=rule.rule_id,
            label=rule.label,
            scope=rule.scope,
            never=[c.negated(t) for t in p.exclusions],
            only=[c.scores(t) for t in p.restrict_to],
            less=[c.scores(t) for t in p.less],
            more=[c.scores(t) for t in p.facets],
            maturity_max=p.maturity_max,
        )
        with self._lock:
            self._compiled[rule.rule_id] = compiled
        return compiled


def _local_minute(state: FeedState, user_id: int, now: datetime) -> int:
    """Minutes after midnight in the user's time zone (UTC when unknown or invalid)."""
    tz_name = str((state.profiles.by_user.get(user_id) or {}).get("timezone") or "UTC")
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    aware = now.replace(tzinfo=UTC) if now.tzinfo is None else now
    local = aware.astimezone(tz)
    return local.hour * 60 + local.minute


def _parsed_from_json(raw: str) -> ParsedMood:
    return ParsedMood.from_dict(json.loads(raw))
