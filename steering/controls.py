"""Standing controls: rules a user sets once and the feed follows in every session.

Controls live in the user's ``settings`` JSON (top-level keys, next to other packages' keys,
which are kept as they are), written with :meth:`Store.update_user_settings` and mirrored in
memory with :meth:`ranking.state.Profiles.set_user_settings`, so a change applies to the next page.
``maturity_max`` is the same key the user-context hydrator already reads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ranking.state import FeedState
from steering.errors import SteeringError
from storage.store import Store

logger = logging.getLogger(__name__)

MAX_RULES = 100
MAX_RULE_CHARS = 80
#: Muted creators per user (a request sends at most this many; ids are bounded too).
MAX_MUTED_AUTHORS = 1000


class ControlsError(SteeringError):
    """Invalid standing controls (the message lists what is wrong and the valid fields)."""


def _clean_words(values: Iterable[str]) -> list[str]:
    """Normalise (lower case, single spaces), drop blanks and repeats, keep the order.

    Linear in the input, and it stops at the first entry past :data:`MAX_RULES` distinct ones
    (de-duplicating by list scan was quadratic and ran over the whole input before the cap).
    """
    out: list[str] = []
    seen: set[str] = set()
    for v in values:
        s = str(v)
        if len(s) > 4 * MAX_RULE_CHARS:  # a normalised rule is short; do not split a huge one
            msg = f"rule {s[:20]!r}... is over {MAX_RULE_CHARS} characters"
            raise ValueError(msg)
        w = " ".join(s.lower().split())
        if not w or w in seen:
            continue
        if len(w) > MAX_RULE_CHARS:
            msg = f"rule {w[:20]!r}... is over {MAX_RULE_CHARS} characters"
            raise ValueError(msg)
        if len(out) == MAX_RULES:
            msg = f"at most {MAX_RULES} entries per list"
            raise ValueError(msg)
        seen.add(w)
        out.append(w)
    return out


class Controls(BaseModel):
    """A user's standing controls.

    Attributes
    ----------
    never_show
        Topics or words never to show (removed by the mood-exclusions filter).
    more_of, less_of
        Topics to boost or demote (the mood scorer).
    muted_words
        Words whose clips are removed when the word is in the caption, topics or hashtags.
    muted_authors
        Creators whose clips are removed.
    maturity_max
        Highest maturity level to show (teens stay capped at 0 whatever this says).
    connected_vs_global
        0 favours the global pool, 1 favours people the user follows and friends; 0.5 neutral.
    personalized
        ``False`` switches the user to the non-personalized following-only feed.
    """

    model_config = ConfigDict(extra="forbid")

    never_show: list[str] = Field(default_factory=list)
    more_of: list[str] = Field(default_factory=list)
    less_of: list[str] = Field(default_factory=list)
    muted_words: list[str] = Field(default_factory=list)
    muted_authors: list[int] = Field(default_factory=list)
    maturity_max: int | None = Field(default=None, ge=0, le=3)
    connected_vs_global: float = Field(default=0.5, ge=0.0, le=1.0)
    personalized: bool = True

    @field_validator("never_show", "more_of", "less_of", "muted_words")
    @classmethod
    def _words(cls, v: list[str]) -> list[str]:
        return _clean_words(v)

    def is_neutral(self) -> bool:
        """Whether the controls change nothing in ranking."""
        return (
            not (self.never_show or self.more_of or self.less_of or self.muted_words)
            and not self.muted_authors
            and abs(self.connected_vs_global - 0.5) < 1e-9
        )


CONTROL_KEYS: tuple[str, ...] = tuple(Controls.model_fields)


def controls_from_settings(settings: dict[str, Any] | None) -> Controls:
    """Read controls from a settings dict (unknown or invalid values fall back to defaults)."""
    raw = {k: v for k, v in (settings or {}).items() if k in CONTROL_KEYS}
    try:
        return Controls.model_validate(raw)
    except ValidationError as exc:
        # Field names only: the values are the user's personal settings.
        bad = sorted({str(e["loc"][0]) for e in exc.errors() if e.get("loc")})
        logger.warning("invalid stored controls (fields %s); using defaults", bad)
        return Controls()


class ControlsService:
    """Read and write standing controls.

    Parameters
    ----------
    store
        Where settings are persisted.
    state
        The serving state whose cached profile is updated after each write.
    """

    def __init__(self, store: Store, state: FeedState) -> None:
        self.store = store
        self.state = state

    def get(self, user_id: int) -> Controls:
        """The user's controls (defaults when none were set)."""
        profile = self.state.profiles.by_user.get(user_id) or {}
        return controls_from_settings(profile.get("settings"))

    def update(self, user_id: int, changes: dict[str, Any]) -> Controls:
        """Merge ``changes`` into the user's controls and persist them.

        Raises
        ------
        ControlsError
            An unknown field or an invalid value.
        """
        unknown = sorted(set(changes) - set(CONTROL_KEYS))
        if unknown:
            msg = f"unknown control(s) {unknown}; valid: {', '.join(CONTROL_KEYS)}"
            raise ControlsError(msg)
        current = self.get(user_id).model_dump()
        current.update(changes)
        try:
            controls = Controls.model_validate(current)
        except ValidationError as exc:
            msg = f"invalid controls: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"
            raise ControlsError(msg) from exc
        self._save(user_id, controls)
        return controls

    def add_rule(self, user_id: int, kind: str, value: str) -> Controls:
        """Add one topic to ``more_of``, ``less_of`` or ``never_show`` (removing it from the
        other two lists, so the latest choice wins)."""
        lists = ("more_of", "less_of", "never_show")
        if kind not in lists:
            msg = f"unknown rule kind {kind!r}; valid: {', '.join(lists)}"
            raise ControlsError(msg)
        c = self.get(user_id)
        word = " ".join(value.lower().split())
        data = c.model_dump()
        for name in lists:
            data[name] = [w for w in data[name] if w != word]
        data[kind].append(word)
        return self.update(user_id, {name: data[name] for name in lists})

    def _save(self, user_id: int, controls: Controls) -> None:
        stored = dict(self.store.get_user(user_id)["settings"])
        dumped = controls.model_dump()
        stored.update(dumped)
        if controls.maturity_max is None:
            stored.pop("maturity_max", None)
        self.store.update_user_settings(user_id, stored)
        self.state.profiles.set_user_settings(user_id, stored)
        # Names of fields only: the values (muted words, topics) are personal.
        logger.info("standing controls saved fields=%d", len(dumped))
