"""The catalogue's own words, for correcting typos in what people type ("fnny cats").

A prompt's topic words are free text, so a typo cannot be told from a word the parser does not
know by looking at the word alone. The catalogue can: a word that no caption, topic or hashtag
holds, and that is one edit (two for long words) away from a word many clips hold, is most
likely that word. :meth:`CatalogueVocabulary.correct` answers that question with rapidfuzz's
optimal-string-alignment distance (an adjacent swap counts as one edit).

Built by :meth:`steering.concepts.ConceptIndex.vocabulary` from the catalogue (document
frequency of each word over captions, topics and hashtags); never from benchmark labels.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping

from rapidfuzz import process
from rapidfuzz.distance import OSA

logger = logging.getLogger(__name__)

_WORD_RE = re.compile(r"[a-z]+")


def _plain_stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def count_words(texts: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Document frequency of each lower-case alphabetic word of 3+ letters.

    ``texts`` holds ``(text, how many clips hold it)`` pairs: catalogues repeat captions and
    tag lists, so each distinct one is split once.
    """
    counts: dict[str, int] = {}
    for text, times in texts:
        for w in set(_WORD_RE.findall(text.lower())):
            if len(w) >= 3:
                counts[w] = counts.get(w, 0) + times
    return counts


class CatalogueVocabulary:
    """Typo correction against the words of a catalogue.

    Parameters
    ----------
    counts
        Document frequency per word (how many clips hold it).
    min_count
        A word becomes a correction target only when at least this many clips hold it (a word
        seen once is as likely a typo itself).
    """

    def __init__(self, counts: Mapping[str, int], *, min_count: int = 3) -> None:
        self.counts = dict(counts)
        self.min_count = min_count
        self._stems = {_plain_stem(w) for w in self.counts}
        # Targets bucketed by first letter: a typo rarely changes the first letter, and a
        # bucket is a few hundred words, so one lookup costs well under a millisecond.
        self._by_first: dict[str, list[str]] = {}
        for w, c in self.counts.items():
            if c >= min_count and len(w) >= 4:
                self._by_first.setdefault(w[0], []).append(w)

    def __len__(self) -> int:
        return len(self.counts)

    def knows(self, word: str) -> bool:
        """Whether some clip holds ``word`` (or its singular)."""
        w = word.lower()
        return w in self.counts or _plain_stem(w) in self._stems

    def correct(self, word: str) -> str | None:
        """The catalogue word ``word`` most likely misspells, or ``None`` to keep it as typed.

        A word is corrected only when no clip holds it, it has four letters or more, and a word
        held by at least ``min_count`` clips starts with the same letter and is one edit away
        (two from eight letters on). A four-letter word is only ever lengthened ("fnny" ->
        "funny", never "cast" -> "cats"). At equal distance a letter added or dropped beats a
        letter changed, then the word more clips hold wins.
        """
        w = word.lower()
        if len(w) < 4 or not w.isalpha() or self.knows(w):
            return None
        allowed = 2 if len(w) >= 8 else 1
        bucket = self._by_first.get(w[0])
        if not bucket:
            return None
        hits = process.extract(w, bucket, scorer=OSA.distance, score_cutoff=allowed, limit=20)
        best: tuple[int, bool, int, str] | None = None
        for target, dist, _ in hits:
            if len(w) == 4 and len(target) <= len(w):
                continue
            # A dropped or doubled letter is the commonest typo: at equal distance, a word of
            # another length wins over a same-length swap ("snaks" -> "snacks", not "snake").
            key = (int(dist), len(target) == len(w), -self.counts[target], target)
            if best is None or key < best:
                best = key
        return best[3] if best is not None else None
