"""The rules every generated clip obeys.

- **Cameo consent** (:mod:`pipelines.generation.consent`): a person's likeness is used and
  shown only to the audience they chose (``none`` by default, ``friends``, ``everyone``;
  teens at most ``friends``, with a linked parent's approval). Revoking cancels open jobs with
  their cameo and removes their cameo clips from every other feed (:class:`CameoConsentFilter`).
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
from typing import TYPE_CHECKING, Any

import numpy as np

# Moved to .consent; importable from here as before.
from pipelines.generation.consent import AUDIENCES as AUDIENCES
from pipelines.generation.consent import CameoConsent as CameoConsent
from pipelines.generation.consent import CameoConsentRegistry as CameoConsentRegistry
from pipelines.generation.errors import RuleViolation

if TYPE_CHECKING:
    from features.embedding import TextEmbedder

logger = logging.getLogger(__name__)


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
