"""How intense (loud, fast, high-arousal) each clip reads, from its words and hashtags.

The governor's taper needs a notion of "calmer" content that holds for any catalogue, needs no
model and costs nothing per request, so it reads a small lexicon of calm and intense words in
each clip's hashtags, topics and caption: ``intensity = 0.5 + 0.5 * (intense - calm) /
(intense + calm)`` over the words found (0.5 when none are). Scores are computed once per clip
and cached by row; new clips are scored when first seen.
"""

from __future__ import annotations

import re
import threading

import numpy as np

from ranking.state import FeedState

_WORD = re.compile(r"[a-z]+")

CALM_WORDS: frozenset[str] = frozenset(
    {
        "calm",
        "relaxing",
        "relax",
        "cozy",
        "cosy",
        "dreamy",
        "gentle",
        "quiet",
        "peaceful",
        "soothing",
        "slow",
        "sleepy",
        "lazy",
        "wholesome",
        "nostalgia",
        "nostalgic",
        "asmr",
        "meditation",
        "mindful",
        "lofi",
        "soft",
        "sunbeam",
        "napping",
        "rainy",
        "timelapse",
        "tutorial",
        "explained",
    }
)
INTENSE_WORDS: frozenset[str] = frozenset(
    {
        "hype",
        "intense",
        "chaos",
        "chaotic",
        "epic",
        "energetic",
        "extreme",
        "insane",
        "crazy",
        "wild",
        "rage",
        "prank",
        "fail",
        "fails",
        "fight",
        "horror",
        "scary",
        "adrenaline",
        "speed",
        "battle",
        "drama",
        "shocking",
        "explosive",
        "compilation",
    }
)


def text_intensity(words: list[str]) -> float:
    """Intensity in ``[0, 1]`` of a bag of lower-case words (0.5 when none is in the lexicon)."""
    calm = sum(w in CALM_WORDS for w in words)
    intense = sum(w in INTENSE_WORDS for w in words)
    if calm + intense == 0:
        return 0.5
    return 0.5 + 0.5 * (intense - calm) / (intense + calm)


class ClipIntensity:
    """Cached per-clip intensity over the serving state's rows.

    Parameters
    ----------
    state
        The serving state whose ``captions``, ``topics`` and ``hashtags`` are read.
    """

    def __init__(self, state: FeedState) -> None:
        self.state = state
        self._values = np.zeros(0, dtype=np.float64)
        self._lock = threading.Lock()

    def for_rows(self, rows: np.ndarray) -> np.ndarray:
        """Intensity of the clips at state ``rows`` (-1 rows, unknown clips, get 0.5)."""
        self._extend()
        rows = np.asarray(rows, dtype=np.int64)
        known = (rows >= 0) & (rows < len(self._values))
        out = np.full(len(rows), 0.5)
        out[known] = self._values[rows[known]]
        return out

    def _extend(self) -> None:
        st = self.state
        n = len(st.catalogue.captions)
        if n <= len(self._values):
            return
        with self._lock, st.lock:
            start = len(self._values)
            new = np.empty(n - start)
            for j, r in enumerate(range(start, n)):
                words = _WORD.findall(st.catalogue.captions[r].lower())
                words += [t.lower() for t in st.catalogue.topics[r]]
                words += [h.lower() for h in st.catalogue.hashtags[r]]
                new[j] = text_intensity(words)
            self._values = np.concatenate([self._values, new])
