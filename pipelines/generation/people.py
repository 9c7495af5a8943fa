"""Protected people: real persons (public figures) whose names a prompt may not use.

The operator maintains the list: entries added through the admin API or the CLI
(``protected_people``), plus an optional starter list shipped with the package
(``protected_people.yaml`` beside this module; ``STEERFEED_GEN_PROTECTED_STARTER`` switches it).
A prompt naming one (exact, fuzzy or embedding match, :mod:`pipelines.generation.names`) is refused
with reason ``public_figure`` — unless the entry is linked to a user of this service who is a
cameo of the same request, since then the cameo-consent rule has already said yes.

Only listed names are caught: a person missing from the list passes. The list is the
operator's responsibility, and the starter list is a small example, not a registry of the
world's public figures.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pipelines.generation.errors import RuleViolation
from pipelines.generation.names import NameEntry, NameMatch, NameMatcher, canonical
from storage.store import Store, utcnow

if TYPE_CHECKING:
    from features.embedding import TextEmbedder

logger = logging.getLogger(__name__)

STARTER_LIST = Path(__file__).with_name("protected_people.yaml")


@dataclass(frozen=True)
class ProtectedPerson:
    """One protected person; ``person_id`` starts with ``starter:`` for starter entries."""

    person_id: str
    name: str
    aliases: tuple[str, ...] = ()
    user_id: int | None = None
    note: str = ""
    created_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "person_id": self.person_id,
            "name": self.name,
            "aliases": list(self.aliases),
            "user_id": self.user_id,
            "note": self.note,
            "source": "starter" if self.person_id.startswith("starter:") else "operator",
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


def load_starter_list(path: Path = STARTER_LIST) -> list[ProtectedPerson]:
    """Entries of a YAML list of ``{name, aliases}`` mappings."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    out = []
    for item in raw:
        name = str(item["name"]).strip()
        aliases = tuple(str(a).strip() for a in item.get("aliases") or [] if str(a).strip())
        out.append(ProtectedPerson(f"starter:{canonical(name)}", name, aliases))
    return out


class ProtectedPeopleRegistry:
    """The operator's list of protected people, matched against prompts.

    Parameters
    ----------
    store
        The DuckDB store (table ``protected_people``).
    starter
        Include the packaged starter list.
    fuzzy_threshold, embedding_threshold, embedder
        The name matcher's settings (:class:`NameMatcher`).
    """

    def __init__(
        self,
        store: Store,
        *,
        starter: bool = True,
        fuzzy_threshold: float = 81.0,
        embedding_threshold: float | None = 0.84,
        embedder: Callable[[], TextEmbedder] | None = None,
    ) -> None:
        self.store = store
        self.starter = load_starter_list() if starter else []
        self.fuzzy_threshold = fuzzy_threshold
        self.embedding_threshold = embedding_threshold
        self._embedder = embedder
        self._lock = threading.Lock()
        self._cache: tuple[dict[str, ProtectedPerson], NameMatcher] | None = None

    def add(
        self,
        name: str,
        *,
        aliases: Iterable[str] = (),
        user_id: int | None = None,
        note: str = "",
    ) -> ProtectedPerson:
        """Protect a person (an entry with the same canonical name is updated)."""
        if not canonical(name):
            msg = "give the person's name (letters or digits)"
            raise ValueError(msg)
        clean = [a.strip() for a in aliases if canonical(a)]
        existing = [p for p in self._stored() if canonical(p.name) == canonical(name)]
        with self.store.write() as cur:
            if existing:
                pid = existing[0].person_id
                cur.execute(
                    "UPDATE protected_people SET aliases = ?, user_id = ?, note = ? "
                    "WHERE person_id = ?",
                    [clean, user_id, note, pid],
                )
            else:
                pid = "pp_" + uuid.uuid4().hex[:12]
                cur.execute(
                    "INSERT INTO protected_people (person_id, name, aliases, user_id, note, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    [pid, name.strip(), clean, user_id, note, utcnow()],
                )
        self._invalidate()
        logger.info("protected person added id=%s aliases=%d", pid, len(clean))
        return next(p for p in self._stored() if p.person_id == pid)

    def remove(self, person_id: str) -> bool:
        """Take an operator entry off the list; True when it was on it."""
        with self.store.write() as cur:
            rows = cur.execute(
                "UPDATE protected_people SET removed_at = ? WHERE person_id = ? "
                "AND removed_at IS NULL RETURNING person_id",
                [utcnow(), person_id],
            ).fetchall()
        self._invalidate()
        return bool(rows)

    def invalidate(self) -> None:
        """Read the list from the store again on next use (another worker changed it)."""
        self._invalidate()

    def _invalidate(self) -> None:
        with self._lock:
            self._cache = None

    def _stored(self) -> list[ProtectedPerson]:
        rows = (
            self.store.cursor()
            .execute(
                "SELECT person_id, name, aliases, user_id, note, created_at FROM protected_people "
                "WHERE removed_at IS NULL ORDER BY created_at"
            )
            .fetchall()
        )
        return [ProtectedPerson(r[0], r[1], tuple(r[2] or ()), r[3], r[4], r[5]) for r in rows]

    def _compiled(self) -> tuple[dict[str, ProtectedPerson], NameMatcher]:
        with self._lock:
            if self._cache is None:
                stored = self._stored()
                names = {canonical(p.name) for p in stored}
                people = {p.person_id: p for p in stored}
                for p in self.starter:  # an operator entry overrides a starter one
                    if canonical(p.name) not in names:
                        people[p.person_id] = p
                matcher = NameMatcher(
                    [NameEntry(p.person_id, p.name, p.aliases) for p in people.values()],
                    fuzzy_threshold=self.fuzzy_threshold,
                    embedding_threshold=self.embedding_threshold,
                    embedder=self._embedder,
                )
                self._cache = (people, matcher)
            return self._cache

    def people(self) -> list[ProtectedPerson]:
        """Everyone on the list (operator entries, then the starter list)."""
        return list(self._compiled()[0].values())

    def find(self, text: str) -> list[tuple[ProtectedPerson, NameMatch]]:
        """Protected people ``text`` names, with how each matched."""
        people, matcher = self._compiled()
        return [(people[m.key], m) for m in matcher.match(text)]

    def check(self, text: str, *, consenting_cameos: Iterable[int] = ()) -> None:
        """Raise :class:`RuleViolation` (``public_figure``) when ``text`` names a protected
        person, unless that person is a user among ``consenting_cameos``."""
        allowed = set(consenting_cameos)
        for person, m in self.find(text):
            if person.user_id is not None and person.user_id in allowed:
                continue
            how = {"exact": "", "fuzzy": f", read as {m.fragment!r}", "embedding": ", by meaning"}
            msg = (
                f"the prompt names {person.name}{how[m.how]}, a real person on this service's "
                "protected list; a real person's likeness is generated only with their consent "
                "(a user who opted in to cameos, added as a cameo). Remove the name"
            )
            raise RuleViolation("public_figure", msg)
