"""Cameo consent: a person's likeness is shown only to the audience they chose.

Policy (docs/privacy.md):

- **Audiences**: ``none`` (nobody but the person), ``friends`` (mutual follows) or ``everyone``.
  No consent on record means ``none``; revoking means ``none``. ``only_me`` is accepted as the
  old name of ``none``.
- **Who gives it**: the person (their own key, or the app's service key relaying their choice).
  A parent or admin key can revoke, never grant or widen.
- **Teens**: a teen's likeness reaches at most ``friends`` (``everyone`` is refused), and the
  teen's consent counts only once a linked parent has approved it; any new grant by the teen
  needs a new approval.
- **Where it holds**: when a clip is asked for (generation rules), on every page
  (:class:`ranking.filters.cameo_consent.CameoConsentFilter`) and at the media route.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pipelines.generation.errors import RuleViolation
from pipelines.generation.filters.cameo_consent import EVERYONE, FRIENDS, NONE, may_see
from storage.store import Store, utcnow

if TYPE_CHECKING:
    from ranking.state import FeedState

logger = logging.getLogger(__name__)

AUDIENCES = (NONE, FRIENDS, EVERYONE)
# Accepted on input, stored as the new name.
AUDIENCE_ALIASES = {"only_me": NONE}
# The widest audience a teen's likeness may reach.
TEEN_MAX_AUDIENCE = FRIENDS
_WIDTH = {NONE: 0, FRIENDS: 1, EVERYONE: 2}


class ConsentError(ValueError):
    """A consent change the policy does not allow (the message says why and what to do)."""


def normalise_audience(audience: str) -> str:
    """The stored name of an audience; raises :class:`ConsentError` for an unknown one."""
    name = AUDIENCE_ALIASES.get(audience, audience)
    if name not in AUDIENCES:
        msg = f"unknown cameo audience {audience!r}; valid: {', '.join(AUDIENCES)}"
        raise ConsentError(msg)
    return name


@dataclass(frozen=True)
class CameoConsent:
    """A person's consent record and what it allows now."""

    user_id: int
    audience: str
    granted_at: datetime
    revoked_at: datetime | None
    approved_at: datetime | None
    is_teen: bool

    @property
    def active(self) -> bool:
        """Whether the consent stands (not revoked)."""
        return self.revoked_at is None

    @property
    def needs_approval(self) -> bool:
        """A teen's consent wider than ``none`` that no linked parent approved yet."""
        return self.is_teen and self.active and self.audience != NONE and not self.approved_at

    @property
    def effective_audience(self) -> str:
        """Who may see clips of the person now."""
        audience = AUDIENCE_ALIASES.get(self.audience, self.audience)
        return _effective(audience, self.active, self.approved_at is not None, self.is_teen)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        approval = "not_needed"
        if self.is_teen and self.audience != NONE:
            approval = "approved" if self.approved_at else "pending"
        return {
            "user_id": self.user_id,
            "audience": self.audience,
            "effective_audience": self.effective_audience,
            "active": self.active,
            "parent_approval": approval,
            "granted_at": self.granted_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "approved_at": self.approved_at.isoformat() if self.approved_at else None,
        }


def _effective(audience: str, active: bool, approved: bool, is_teen: bool) -> str:
    if not active or audience not in _WIDTH:
        return NONE
    if is_teen:
        if not approved:
            return NONE
        if _WIDTH[audience] > _WIDTH[TEEN_MAX_AUDIENCE]:
            return TEEN_MAX_AUDIENCE
    return audience


class _Audiences(Mapping[int, str]):
    """Read-only view: person -> effective audience, computed per lookup from the records."""

    def __init__(
        self, records: dict[int, tuple[str, bool, bool]], is_teen: Callable[[int], bool]
    ) -> None:
        self._records = records
        self._is_teen = is_teen

    def __getitem__(self, user_id: int) -> str:
        audience, active, approved = self._records[user_id]
        return _effective(audience, active, approved, self._is_teen(user_id))

    def __iter__(self) -> Iterator[int]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)


def no_consent(user_id: int) -> dict[str, Any]:
    """What :meth:`CameoConsent.to_dict` says for a person with no record."""
    return {
        "user_id": user_id,
        "audience": NONE,
        "effective_audience": NONE,
        "active": False,
        "parent_approval": "not_needed",
        "audiences": list(AUDIENCES),
    }


class CameoConsentRegistry:
    """Consent records in ``cameo_consents``; the effective audiences are cached in memory for
    the feed filter and the media route (invalidated by every change here and by erasure).

    Parameters
    ----------
    store
        The DuckDB store.
    state
        The serving state (mutual follows decide ``friends``; profiles say who is a teen).
    """

    def __init__(self, store: Store, state: FeedState) -> None:
        self.store = store
        self.state = state
        self._lock = threading.Lock()
        self._records: dict[int, tuple[str, bool, bool]] | None = None
        self._revoked: frozenset[int] | None = None

    def _is_teen(self, user_id: int) -> bool:
        return bool(self.state.profiles.by_user.get(user_id, {}).get("is_teen", False))

    def get(self, user_id: int) -> CameoConsent | None:
        """The person's consent record (active or revoked), or None."""
        df = self.store.query(
            "SELECT user_id, audience, granted_at, revoked_at, approved_at FROM cameo_consents "
            "WHERE user_id = ?",
            [user_id],
        )
        if df.height == 0:
            return None
        r = df.row(0, named=True)
        return CameoConsent(
            int(r["user_id"]),
            AUDIENCE_ALIASES.get(r["audience"], r["audience"]),
            r["granted_at"],
            r["revoked_at"],
            r["approved_at"],
            self._is_teen(user_id),
        )

    def grant(self, user_id: int, audience: str) -> CameoConsent:
        """Record the person's own choice of audience (a revoked consent may be given again).

        A teen may choose at most ``friends``; their choice waits for a linked parent's
        approval (:meth:`approve`). Raises :class:`ConsentError` otherwise.
        """
        name = normalise_audience(audience)
        if self._is_teen(user_id) and _WIDTH[name] > _WIDTH[TEEN_MAX_AUDIENCE]:
            msg = (
                f"a teen's likeness can be shown at most to {TEEN_MAX_AUDIENCE}; "
                f"choose {TEEN_MAX_AUDIENCE!r} or {NONE!r}"
            )
            raise ConsentError(msg)
        with self.store.write() as cur:
            cur.execute(
                "INSERT OR REPLACE INTO cameo_consents (user_id, audience, granted_at, "
                "revoked_at, approved_by_user_id, approved_at) VALUES (?, ?, ?, NULL, NULL, NULL)",
                [user_id, name, utcnow()],
            )
        self.invalidate()
        got = self.get(user_id)
        assert got is not None
        logger.info("cameo consent recorded")
        return got

    def approve(self, child_id: int, *, parent_id: int) -> CameoConsent:
        """A linked parent approves a teen's pending consent (the caller checks the link)."""
        consent = self.get(child_id)
        if consent is None or not consent.needs_approval:
            msg = (
                f"user {child_id} has no cameo consent waiting for approval; the teen chooses "
                f"an audience first with PUT /v1/users/{child_id}/cameo-consent"
            )
            raise ConsentError(msg)
        with self.store.write() as cur:
            cur.execute(
                "UPDATE cameo_consents SET approved_by_user_id = ?, approved_at = ? "
                "WHERE user_id = ?",
                [parent_id, utcnow(), child_id],
            )
        self.invalidate()
        got = self.get(child_id)
        assert got is not None
        logger.info("cameo consent approved by a linked parent")
        return got

    def revoke(self, user_id: int) -> CameoConsent | None:
        """Withdraw consent; clips showing the person leave every other feed at the next page."""
        now = utcnow()
        with self.store.write() as cur:
            cur.execute(
                "INSERT INTO cameo_consents (user_id, audience, granted_at, revoked_at) "
                "VALUES (?, 'none', ?, ?) ON CONFLICT (user_id) DO UPDATE SET "
                "revoked_at = excluded.revoked_at",
                [user_id, now, now],
            )
        self.invalidate()
        logger.info("cameo consent revoked")
        return self.get(user_id)

    def invalidate(self) -> None:
        """Forget cached audiences (after any change, and after an erasure)."""
        with self._lock:
            self._records = None
            self._revoked = None

    def _load(self) -> dict[int, tuple[str, bool, bool]]:
        with self._lock:
            if self._records is None:
                df = self.store.query(
                    "SELECT user_id, audience, revoked_at IS NULL AS active, "
                    "approved_at IS NOT NULL AS approved FROM cameo_consents"
                )
                self._records = {
                    int(r[0]): (AUDIENCE_ALIASES.get(r[1], r[1]), bool(r[2]), bool(r[3]))
                    for r in df.iter_rows()
                }
            return self._records

    def audiences(self) -> Mapping[int, str]:
        """Effective audience of each person with a consent on record (a lookup per person:
        teen status is read at lookup time, so a profile change applies at once)."""
        return _Audiences(self._load(), self._is_teen)

    def effective(self, user_id: int) -> str:
        """Who may see clips of the person now."""
        return self.audiences().get(user_id, NONE)

    def visible_to(self, viewer: int | None, people: Sequence[int]) -> bool:
        """Whether ``viewer`` may see a clip showing ``people`` (``None``: an unknown viewer)."""
        if not people:
            return True
        return may_see(
            viewer,
            people,
            self.audiences(),
            lambda: self.state.graph.friends(viewer) if viewer is not None else set(),
        )

    def revoked_users(self) -> frozenset[int]:
        """People who revoked their consent."""
        with self._lock:
            cached = self._revoked
        if cached is None:
            cached = frozenset(uid for uid, (_, active, _) in self._load().items() if not active)
            with self._lock:
                self._revoked = cached
        return cached

    def check(self, subject: int, requester: int | None) -> None:
        """Raise :class:`RuleViolation` unless ``requester`` may use ``subject``'s likeness in a
        new clip (a person may always use their own)."""
        if requester == subject:
            return
        audience = self.effective(subject)
        if audience == EVERYONE:
            return
        if audience == FRIENDS:
            if requester is not None and requester in self.state.graph.friends(subject):
                return
            msg = f"user {subject} allows cameos only by friends (mutual follows)"
            raise RuleViolation("cameo_consent", msg)
        msg = (
            f"user {subject} has not opted in to cameos; they can opt in with "
            f"PUT /v1/users/{subject}/cameo-consent"
        )
        raise RuleViolation("cameo_consent", msg)
