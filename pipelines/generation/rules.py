"""The rules every generated clip obeys.

- **Cameo consent**: a person's likeness is used only when they opted in, with an audience
  (``everyone``, ``friends`` = mutual follows, ``only_me``). Revoking cancels open jobs with
  their cameo and removes their cameo clips from every feed (:class:`CameoConsentFilter`).
- **Rights-holder opt-out** (:mod:`pipelines.generation.rights`): a holder registers names of
  characters, brands or works once (a blanket opt-out); prompts naming one are refused and
  existing clips whose caption or hashtags name one are filtered from feeds.
- **Protected people** (:mod:`pipelines.generation.people`): prompts naming a real person on
  the operator's list are refused unless that person is a user who consented to the cameo.
- **Prompt safety**: a block list, then embedding similarity to short descriptions of
  disallowed concepts, with the project's sentence-transformers embedder.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.generation.errors import RuleViolation
from storage.store import Store, utcnow

if TYPE_CHECKING:
    from features.embedding import TextEmbedder
    from ranking.state import FeedState

logger = logging.getLogger(__name__)

AUDIENCES = ("everyone", "friends", "only_me")

# Terms refused outright (whole words, case-insensitive).
BLOCKED_TERMS: tuple[str, ...] = (
    "porn",
    "pornography",
    "pornographic",
    "nude",
    "nudes",
    "naked",
    "sex",
    "sexual",
    "nsfw",
    "gore",
    "gory",
    "beheading",
    "decapitation",
    "dismember",
    "dismembered",
    "suicide",
    "self-harm",
    "bomb-making",
    "pipe bomb",
    "child abuse",
    "terrorist attack",
    "mass shooting",
)
# Disallowed concepts, each with a few short anchor phrases (a prompt close to any is refused).
DISALLOWED_CONCEPTS: dict[str, tuple[str, ...]] = {
    "graphic violence": (
        "blood and gore",
        "severed limbs and mutilated bodies",
        "people being brutally killed",
        "a person being tortured",
    ),
    "sexual content": ("naked people having sex", "pornography", "nude erotic pose"),
    "sexualised minors": ("sexualised children", "child nudity"),
    "self-harm": ("a person cutting themselves", "suicide", "self-harm wounds"),
    "weapon instructions": (
        "how to build a bomb",
        "making explosives at home",
        "instructions to make a gun",
    ),
    "hate": ("racist hate speech", "attacking people for their religion"),
    "terrorism": ("terrorists attacking a crowd", "a mass shooting"),
    "animal cruelty": ("an animal being beaten", "torturing an animal"),
}


def normalise(text: str) -> str:
    """Lower case, punctuation as spaces, single spaces (for name and term matching)."""
    return " ".join(re.sub(r"[^\w\s-]", " ", text.lower()).replace("_", " ").split())


def _phrase_pattern(phrases: list[str]) -> re.Pattern[str] | None:
    norm = sorted({normalise(p) for p in phrases if normalise(p)}, key=len, reverse=True)
    if not norm:
        return None
    return re.compile(r"(?<!\w)(" + "|".join(re.escape(p) for p in norm) + r")(?!\w)")


# -- cameo consent --------------------------------------------------------------------------------
@dataclass(frozen=True)
class CameoConsent:
    """A person's opt-in to appear in generated clips."""

    user_id: int
    audience: str
    granted_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        """Whether the opt-in stands."""
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "user_id": self.user_id,
            "audience": self.audience,
            "active": self.active,
            "granted_at": self.granted_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


class CameoConsentRegistry:
    """Cameo opt-ins in ``cameo_consents``, with the revoked users held in memory for filters.

    Parameters
    ----------
    store
        The DuckDB store.
    state
        The serving state (mutual follows decide ``friends``).
    """

    def __init__(self, store: Store, state: FeedState) -> None:
        self.store = store
        self.state = state
        self._lock = threading.Lock()
        self._revoked: frozenset[int] | None = None

    def get(self, user_id: int) -> CameoConsent | None:
        """The user's consent record (active or revoked), or None."""
        df = self.store.query(
            "SELECT user_id, audience, granted_at, revoked_at FROM cameo_consents "
            "WHERE user_id = ?",
            [user_id],
        )
        if df.height == 0:
            return None
        r = df.row(0, named=True)
        return CameoConsent(int(r["user_id"]), r["audience"], r["granted_at"], r["revoked_at"])

    def grant(self, user_id: int, audience: str) -> CameoConsent:
        """Opt in (or change the audience); a revoked user may opt in again."""
        if audience not in AUDIENCES:
            msg = f"unknown cameo audience {audience!r}; valid: {', '.join(AUDIENCES)}"
            raise ValueError(msg)
        with self.store.write() as cur:
            cur.execute(
                "INSERT OR REPLACE INTO cameo_consents (user_id, audience, granted_at, revoked_at)"
                " VALUES (?, ?, ?, NULL)",
                [user_id, audience, utcnow()],
            )
        self._invalidate()
        got = self.get(user_id)
        assert got is not None
        logger.info("cameo consent granted user=%d audience=%s", user_id, audience)
        return got

    def revoke(self, user_id: int) -> CameoConsent | None:
        """Withdraw consent; their cameo clips leave every feed at the next page."""
        with self.store.write() as cur:
            cur.execute(
                "INSERT INTO cameo_consents (user_id, audience, granted_at, revoked_at) "
                "VALUES (?, 'only_me', ?, ?) ON CONFLICT (user_id) DO UPDATE SET "
                "revoked_at = excluded.revoked_at",
                [user_id, utcnow(), utcnow()],
            )
        self._invalidate()
        logger.info("cameo consent revoked user=%d", user_id)
        return self.get(user_id)

    def _invalidate(self) -> None:
        with self._lock:
            self._revoked = None

    def revoked_users(self) -> frozenset[int]:
        """Users who revoked their consent (cached until the next grant or revoke)."""
        with self._lock:
            if self._revoked is None:
                df = self.store.query(
                    "SELECT user_id FROM cameo_consents WHERE revoked_at IS NOT NULL"
                )
                self._revoked = frozenset(int(x) for x in df["user_id"].to_list())
            return self._revoked

    def check(self, subject: int, requester: int | None) -> None:
        """Raise :class:`RuleViolation` unless ``requester`` may use ``subject``'s likeness."""
        consent = self.get(subject)
        if consent is None or not consent.active:
            msg = (
                f"user {subject} has not opted in to cameos; they can opt in with "
                f"PUT /v1/users/{subject}/cameo-consent"
            )
            raise RuleViolation("cameo_consent", msg)
        if requester == subject or consent.audience == "everyone":
            return
        if consent.audience == "friends" and requester is not None:
            if requester in self.state.friends(subject):
                return
            msg = f"user {subject} allows cameos only by friends (mutual follows)"
            raise RuleViolation("cameo_consent", msg)
        msg = f"user {subject} allows cameos only in their own clips"
        raise RuleViolation("cameo_consent", msg)


# -- prompt safety -------------------------------------------------------------------------------
class PromptSafety:
    """Block list plus embedding similarity to disallowed concepts.

    Parameters
    ----------
    embedder
        Returns the project's text embedder (called on first check, so nothing loads early).
    threshold
        Cosine similarity to any disallowed anchor at or above which a prompt is refused.
    extra_terms
        More blocked terms (from settings).
    """

    def __init__(
        self,
        embedder: Callable[[], TextEmbedder],
        *,
        threshold: float = 0.5,
        extra_terms: list[str] | None = None,
    ) -> None:
        self._embedder = embedder
        self.threshold = threshold
        self._pattern = _phrase_pattern([*BLOCKED_TERMS, *(extra_terms or [])])
        self._anchors: np.ndarray | None = None
        self._labels = [k for k, v in DISALLOWED_CONCEPTS.items() for _ in v]
        self._lock = threading.Lock()

    def _anchor_matrix(self) -> np.ndarray:
        with self._lock:
            if self._anchors is None:
                phrases = [a for v in DISALLOWED_CONCEPTS.values() for a in v]
                self._anchors = self._embedder().embed(phrases)
            return self._anchors

    def assess(self, prompt: str) -> dict[str, Any]:
        """What the check found: blocked term, closest concept and its similarity."""
        term = None
        if self._pattern is not None:
            m = self._pattern.search(normalise(prompt))
            term = m.group(1) if m else None
        vec = self._embedder().embed_one(prompt)
        sims = self._anchor_matrix() @ vec
        best = int(np.argmax(sims))
        return {
            "blocked_term": term,
            "concept": self._labels[best],
            "similarity": round(float(sims[best]), 4),
            "threshold": self.threshold,
        }

    def check(self, prompt: str) -> None:
        """Raise :class:`RuleViolation` for a blocked term or a prompt close to a disallowed
        concept."""
        if self._pattern is not None:
            m = self._pattern.search(normalise(prompt))
            if m:
                msg = f"the prompt contains the blocked term {m.group(1)!r}; rephrase it"
                raise RuleViolation("prompt_safety", msg)
        found = self.assess(prompt)
        if found["similarity"] >= self.threshold:
            msg = (
                f"the prompt is too close to a disallowed concept ({found['concept']}, "
                f"similarity {found['similarity']:.2f} >= {self.threshold:.2f}); rephrase it"
            )
            raise RuleViolation("prompt_safety", msg)
