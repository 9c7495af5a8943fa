"""Rights holders: blanket opt-outs of names, holder accounts verified by an admin, and the log
of what was refused, filtered or taken down in a holder's name.

- An admin registers names directly (active at once), or a holder applies through the API with
  a user key: the holder and its names wait as ``pending`` until an admin verifies them
  (``verified`` activates the names; ``rejected`` drops them). Names a verified holder adds
  later wait for the next verification.
- Names are matched robustly (:mod:`pipelines.generation.names`): prompts by the exact, fuzzy
  and embedding ways; catalogue captions by the lexical ways only.
- Each refusal, filtered clip and takedown in a holder's name is written to
  ``rights_notifications``, which the holder reads through the API. The log never names who
  asked: it holds the matched name, how it matched, the matching words and the clip id.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pipelines.generation.errors import GenerationError, RuleViolation
from pipelines.generation.names import NameEntry, NameMatch, NameMatcher, canonical
from storage.store import Store, utcnow

if TYPE_CHECKING:
    from features.embedding import TextEmbedder

logger = logging.getLogger(__name__)

OPTOUT_KINDS = ("character", "brand", "work")
HOLDER_STATUSES = ("pending", "verified", "rejected")
NOTIFICATION_KINDS = (
    "prompt_refused",
    "clip_filtered",
    "takedown",
    "takedown_reversed",
    "holder_verified",
    "holder_rejected",
)


class UnknownHolderError(GenerationError):
    """A rights-holder id that is not registered."""


class HolderStateError(GenerationError):
    """An action the holder's status does not allow (e.g. a takedown by an unverified holder)."""


@dataclass(frozen=True)
class OptOut:
    """One registered name."""

    optout_id: str
    holder: str
    name: str
    kind: str
    created_at: datetime
    holder_id: str | None = None
    status: str = "active"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "optout_id": self.optout_id,
            "holder": self.holder,
            "holder_id": self.holder_id,
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
        }


_OPTOUT_COLS = "optout_id, holder, name, kind, created_at, holder_id, coalesce(status, 'active')"


def _optout(r: tuple[Any, ...]) -> OptOut:
    return OptOut(r[0], r[1], r[2], r[3], r[4], r[5], r[6])


class RightsOptOutRegistry:
    """Blanket opt-outs by rights holders (``rights_optouts``), matched robustly.

    ``version`` changes with every registration, activation or removal so filters re-match.

    Parameters
    ----------
    store
        The DuckDB store.
    fuzzy_threshold, embedding_threshold
        The name matcher's thresholds (see :class:`NameMatcher`).
    embedder
        Returns the sentence embedder (for the embedding way of matching prompts).
    """

    def __init__(
        self,
        store: Store,
        *,
        fuzzy_threshold: float = 81.0,
        embedding_threshold: float | None = 0.84,
        embedder: Callable[[], TextEmbedder] | None = None,
    ) -> None:
        self.store = store
        self.fuzzy_threshold = fuzzy_threshold
        self.embedding_threshold = embedding_threshold
        self._embedder = embedder
        self._lock = threading.Lock()
        self._cache: tuple[dict[str, OptOut], NameMatcher] | None = None
        self.version = 0

    # -- writes ---------------------------------------------------------------------------------
    def register(
        self,
        holder: str,
        names: list[str],
        *,
        kind: str,
        holder_id: str | None = None,
        status: str = "active",
    ) -> list[OptOut]:
        """Register names for a holder (a name already registered for this holder is kept as
        it is); return the holder's rows for these names."""
        if kind not in OPTOUT_KINDS:
            msg = f"unknown opt-out kind {kind!r}; valid: {', '.join(OPTOUT_KINDS)}"
            raise ValueError(msg)
        clean = [n.strip() for n in names if canonical(n)]
        if not clean or not holder.strip():
            msg = "give a holder and at least one name with letters or digits"
            raise ValueError(msg)
        mine = [o for o in self._all() if o.holder_id == holder_id and o.holder == holder.strip()]
        have = {canonical(o.name) for o in mine}
        with self.store.write() as cur:
            for name in dict.fromkeys(clean):
                if canonical(name) in have:
                    continue
                have.add(canonical(name))
                cur.execute(
                    "INSERT INTO rights_optouts (optout_id, holder, name, kind, created_at, "
                    "holder_id, status) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        uuid.uuid4().hex[:12],
                        holder.strip(),
                        name,
                        kind,
                        utcnow(),
                        holder_id,
                        status,
                    ],
                )
        self._invalidate()
        logger.info("rights opt-out registered names=%d status=%s", len(clean), status)
        wanted = {canonical(n) for n in clean}
        return [
            o
            for o in self._all()
            if o.holder_id == holder_id
            and o.holder == holder.strip()
            and canonical(o.name) in wanted
        ]

    def set_status(self, holder_id: str, *, from_status: str, to_status: str) -> int:
        """Move a holder's names from one status to another; return how many moved."""
        with self.store.write() as cur:
            rows = cur.execute(
                "UPDATE rights_optouts SET status = ? WHERE holder_id = ? AND status = ? "
                "AND removed_at IS NULL RETURNING optout_id",
                [to_status, holder_id, from_status],
            ).fetchall()
        self._invalidate()
        return len(rows)

    def remove(self, optout_id: str) -> bool:
        """Withdraw one registered name; True when it existed."""
        with self.store.write() as cur:
            rows = cur.execute(
                "UPDATE rights_optouts SET removed_at = ? WHERE optout_id = ? "
                "AND removed_at IS NULL RETURNING optout_id",
                [utcnow(), optout_id],
            ).fetchall()
        self._invalidate()
        return bool(rows)

    def invalidate(self) -> None:
        """Read the list from the store again on next use (another worker changed it)."""
        self._invalidate()

    def _invalidate(self) -> None:
        with self._lock:
            self._cache = None
            self.version += 1

    # -- reads ----------------------------------------------------------------------------------
    def _all(self) -> list[OptOut]:
        rows = (
            self.store.cursor()
            .execute(
                f"SELECT {_OPTOUT_COLS} FROM rights_optouts WHERE removed_at IS NULL "  # noqa: S608
                "ORDER BY created_at"
            )
            .fetchall()
        )
        return [_optout(r) for r in rows]

    def get(self, optout_id: str) -> OptOut | None:
        """One registered name (any status), or None."""
        rows = (
            self.store.cursor()
            .execute(
                f"SELECT {_OPTOUT_COLS} FROM rights_optouts WHERE optout_id = ? "  # noqa: S608
                "AND removed_at IS NULL",
                [optout_id],
            )
            .fetchall()
        )
        return _optout(rows[0]) if rows else None

    def _compiled(self) -> tuple[dict[str, OptOut], NameMatcher]:
        with self._lock:
            if self._cache is None:
                items = {o.optout_id: o for o in self._all() if o.status == "active"}
                matcher = NameMatcher(
                    [NameEntry(o.optout_id, o.name) for o in items.values()],
                    fuzzy_threshold=self.fuzzy_threshold,
                    embedding_threshold=self.embedding_threshold,
                    embedder=self._embedder,
                )
                self._cache = (items, matcher)
            return self._cache

    def is_empty(self) -> bool:
        """Whether no name is active."""
        return not self._compiled()[0]

    def active(self) -> list[OptOut]:
        """Active registered names."""
        return list(self._compiled()[0].values())

    def of_holder(self, holder_id: str) -> list[OptOut]:
        """A holder's names, any status."""
        return [o for o in self._all() if o.holder_id == holder_id]

    def find(self, text: str, *, semantic: bool = True) -> list[tuple[OptOut, NameMatch]]:
        """Active names ``text`` names, with how each matched."""
        items, matcher = self._compiled()
        if not items:
            return []
        return [(items[m.key], m) for m in matcher.match(text, semantic=semantic)]

    def matches(self, text: str) -> list[OptOut]:
        """Active names that ``text`` names by the lexical ways (what feed filters use)."""
        return [o for o, _ in self.find(text, semantic=False)]

    def check(self, text: str, *, notify: bool = True) -> None:
        """Raise :class:`RuleViolation` when ``text`` names an opted-out character, brand or
        work (any way of matching); the holder is notified when ``notify``."""
        hit = self.find(text)
        if not hit:
            return
        o, m = hit[0]
        if notify and o.holder_id:
            self.notify(
                o.holder_id, "prompt_refused", name=o.name, how=m.how, matched=m.fragment[:200]
            )
        how = {"exact": "", "fuzzy": f" (read as {m.fragment!r})", "embedding": " (by meaning)"}
        msg = (
            f"{o.holder} has opted out of generated clips using the {o.kind} "
            f"{o.name!r}{how[m.how]}; remove it from the prompt"
        )
        raise RuleViolation("rights_opt_out", msg)

    # -- notifications --------------------------------------------------------------------------
    def notify(
        self,
        holder_id: str,
        kind: str,
        *,
        name: str = "",
        how: str = "",
        matched: str = "",
        item_id: int | None = None,
        detail: str = "",
    ) -> None:
        """Append one entry to the holder's notification log."""
        if kind not in NOTIFICATION_KINDS:
            msg = f"unknown notification kind {kind!r}; valid: {', '.join(NOTIFICATION_KINDS)}"
            raise ValueError(msg)
        with self.store.write() as cur:
            cur.execute(
                "INSERT INTO rights_notifications (notification_id, holder_id, at_ts, kind, "
                "name, how, matched, item_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [uuid.uuid4().hex, holder_id, utcnow(), kind, name, how, matched, item_id, detail],
            )

    def notifications(
        self, holder_id: str, *, kind: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The holder's log, newest first."""
        where, params = ("AND kind = ?", [kind]) if kind else ("", [])
        df = self.store.query(
            "SELECT notification_id, at_ts, kind, name, how, matched, item_id, detail "  # noqa: S608
            f"FROM rights_notifications WHERE holder_id = ? {where} "
            "ORDER BY at_ts DESC, notification_id LIMIT ?",
            [holder_id, *params, limit],
        )
        out = df.to_dicts()
        for r in out:
            r["at"] = r.pop("at_ts").isoformat()
        return out


@dataclass(frozen=True)
class RightsHolder:
    """A rights holder's account."""

    holder_id: str
    user_id: int | None
    name: str
    contact: str
    evidence: str
    status: str
    created_at: datetime
    decided_at: datetime | None
    decision_note: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "holder_id": self.holder_id,
            "user_id": self.user_id,
            "name": self.name,
            "contact": self.contact,
            "evidence": self.evidence,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "decision_note": self.decision_note,
        }


_HOLDER_COLS = (
    "holder_id, user_id, name, contact, evidence, status, created_at, decided_at, decision_note"
)


class RightsHolderRegistry:
    """Holder accounts (``rights_holders``) and their verification by an admin.

    Parameters
    ----------
    store
        The DuckDB store.
    optouts
        The opt-out registry the holder's names go into.
    """

    def __init__(self, store: Store, optouts: RightsOptOutRegistry) -> None:
        self.store = store
        self.optouts = optouts

    def apply(
        self,
        *,
        user_id: int | None,
        name: str,
        names: list[str],
        kind: str,
        contact: str = "",
        evidence: str = "",
    ) -> tuple[RightsHolder, list[OptOut]]:
        """Open a holder account with its names, both pending until an admin verifies."""
        if not name.strip():
            msg = "give the rights holder's name"
            raise ValueError(msg)
        holder_id = "rh_" + uuid.uuid4().hex[:12]
        with self.store.write() as cur:
            cur.execute(
                f"INSERT INTO rights_holders ({_HOLDER_COLS}) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?, 'pending', ?, NULL, '')",
                [holder_id, user_id, name.strip(), contact, evidence, utcnow()],
            )
        try:
            items = self.optouts.register(
                name, names, kind=kind, holder_id=holder_id, status="pending"
            )
        except ValueError:
            with self.store.write() as cur:
                cur.execute("DELETE FROM rights_holders WHERE holder_id = ?", [holder_id])
            raise
        logger.info("rights holder applied holder=%s names=%d", holder_id, len(items))
        return self.get(holder_id), items

    def get(self, holder_id: str) -> RightsHolder:
        """One holder; :class:`UnknownHolderError` when there is none."""
        rows = (
            self.store.cursor()
            .execute(f"SELECT {_HOLDER_COLS} FROM rights_holders WHERE holder_id = ?", [holder_id])  # noqa: S608
            .fetchall()
        )
        if not rows:
            msg = f"unknown rights holder {holder_id!r}"
            raise UnknownHolderError(msg)
        return RightsHolder(*rows[0])

    def list_holders(self, *, status: str | None = None, limit: int = 100) -> list[RightsHolder]:
        """Holders, oldest first (optionally of one status)."""
        where, params = ("WHERE status = ?", [status]) if status else ("", [])
        rows = (
            self.store.cursor()
            .execute(
                f"SELECT {_HOLDER_COLS} FROM rights_holders {where} ORDER BY created_at LIMIT ?",  # noqa: S608
                [*params, limit],
            )
            .fetchall()
        )
        return [RightsHolder(*r) for r in rows]

    def add_names(self, holder_id: str, names: list[str], *, kind: str) -> list[OptOut]:
        """More names for a holder; they wait for the next verification."""
        h = self.get(holder_id)
        if h.status == "rejected":
            msg = f"rights holder {holder_id} was rejected; apply again"
            raise HolderStateError(msg)
        return self.optouts.register(
            h.name, names, kind=kind, holder_id=holder_id, status="pending"
        )

    def decide(self, holder_id: str, *, verified: bool, note: str = "") -> RightsHolder:
        """An admin's decision: verify (the holder's pending names become active) or reject."""
        self.get(holder_id)
        status = "verified" if verified else "rejected"
        with self.store.write() as cur:
            cur.execute(
                "UPDATE rights_holders SET status = ?, decided_at = ?, decision_note = ? "
                "WHERE holder_id = ?",
                [status, utcnow(), note, holder_id],
            )
        moved = self.optouts.set_status(
            holder_id, from_status="pending", to_status="active" if verified else "rejected"
        )
        self.optouts.notify(
            holder_id,
            "holder_verified" if verified else "holder_rejected",
            detail=f"{moved} name(s) {'active' if verified else 'rejected'}. {note}".strip(),
        )
        logger.info("rights holder %s %s names=%d", holder_id, status, moved)
        return self.get(holder_id)

    def require_verified(self, holder_id: str) -> RightsHolder:
        """The holder, or :class:`HolderStateError` unless an admin verified it."""
        h = self.get(holder_id)
        if h.status != "verified":
            msg = f"rights holder {holder_id} is {h.status}; an admin must verify it first"
            raise HolderStateError(msg)
        return h
