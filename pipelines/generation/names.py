"""Matching names in free text: rights holders' characters, brands and works, and protected
people.

A prompt matches a name in one of three ways, tried in order:

1. **exact** after canonicalisation: Unicode compatibility folding and accents removed, common
   Cyrillic/Greek look-alikes mapped to Latin, zero-width characters dropped, leetspeak mapped
   (``m1ckey`` -> ``mickey``; ``1`` and ``|`` are tried as both ``i`` and ``l``), punctuation as
   spaces, runs of single letters joined (``m.i.c.k.e.y``), runs of three or more repeated
   letters cut to two; a name written as one word, or glued to other words (names of six
   letters or more), also counts;
2. **fuzzy**: rapidfuzz's ratio between the name with its spaces removed and each window of
   the prompt's words (the name's word count, and one more when no stop word is in it, so
   ``mic key mouse`` and ``mickeymouse`` match); a name of fewer than
   :data:`MIN_FUZZY_LENGTH` letters only matches exactly;
3. **embedding**: cosine similarity between the whole prompt and the name with the project's
   sentence embedder (catches "a mouse named mickey" or a description naming no name).

The two thresholds are measured on a labelled list of true and false matches (see
:func:`calibrate` and ``tests/pipelines/data/name_match_labels.csv``). Feed filters use the
lexical ways only (exact and fuzzy): hiding an uploaded clip on an embedding's say-so is too
costly, while a refused prompt can be rephrased.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from rapidfuzz import fuzz

if TYPE_CHECKING:
    from features.embedding import TextEmbedder

#: Shortest name (letters, spaces removed) matched fuzzily; shorter names match exactly only.
MIN_FUZZY_LENGTH = 5
#: Shortest one-word name matched fuzzily: one edit in a short word is another word
#: ("putin" and "putting", "barbie" and "barber").
MIN_FUZZY_LENGTH_ONE_WORD = 8
STOP_WORDS = frozenset(
    {"a", "an", "and", "as", "at", "by", "for", "in", "is", "of", "on", "or", "the", "to", "with"}
)
_LOOKALIKES = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d",
    "ɡ": "g", "ӏ": "l",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "μ": "m", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x",
}  # fmt: skip
_LEET = {
    "0": "o", "2": "z", "3": "e", "4": "a", "5": "s", "6": "g", "7": "t", "8": "b", "9": "g",
    "@": "a", "$": "s", "!": "i", "+": "t", "€": "e", "£": "l", "¡": "i",
}  # fmt: skip
_AMBIGUOUS = ("1", "|")  # read as "i" in one variant and as "l" in the other
_ZERO_WIDTH = re.compile(r"[\u200b-\u200f\u2060-\u2064\ufeff\u00ad]")
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_REPEATS = re.compile(r"(.)\1{2,}")
_LEETABLE = re.compile(r"[^\s]+")


def _fold(text: str) -> str:
    text = _ZERO_WIDTH.sub("", text)
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return "".join(_LOOKALIKES.get(ch, ch) for ch in text)


def _deleet_word(word: str, one_as: str) -> str:
    # Only words with a letter are read as leetspeak: "50 cent" keeps its number.
    if not any(ch.isalpha() for ch in word):
        return word
    out = []
    for i, ch in enumerate(word):
        # A symbol ending the word is punctuation ("mickey!"), not a letter ("h@rry").
        last = i + 1 == len(word) or not word[i + 1].isalnum()
        if not ch.isdigit() and last:
            out.append(ch)
        elif ch in _AMBIGUOUS:
            out.append(one_as)
        else:
            out.append(_LEET.get(ch, ch))
    return "".join(out)


def _tokens(folded: str) -> list[str]:
    words = [_REPEATS.sub(r"\1\1", w) for w in _TOKEN.findall(folded)]
    # Join runs of three or more single letters ("m i c k e y" from "m.i.c.k.e.y").
    out: list[str] = []
    run: list[str] = []
    for w in [*words, ""]:
        if len(w) == 1 and w.isalpha():
            run.append(w)
            continue
        if len(run) >= 3:
            out.append("".join(run))
        else:
            out.extend(run)
        run = []
        if w:
            out.append(w)
    return out


def canonical_variants(text: str) -> list[list[str]]:
    """The text's words after canonicalisation, once per reading of ``1`` and ``|``."""
    folded = _fold(text)
    variants = []
    for one_as in ("i", "l"):

        def deleet(m: re.Match[str], o: str = one_as) -> str:
            return _deleet_word(m.group(0), o)

        deleeted = _LEETABLE.sub(deleet, folded)
        toks = _tokens(deleeted)
        if toks not in variants:
            variants.append(toks)
        if not any(a in folded for a in _AMBIGUOUS):
            break
    return variants


def canonical(text: str) -> str:
    """One canonical form (``1`` read as ``i``), words joined by single spaces."""
    return " ".join(canonical_variants(text)[0])


@dataclass(frozen=True)
class NameEntry:
    """One thing to recognise: its key (registry id), the name shown, and aliases."""

    key: str
    name: str
    aliases: tuple[str, ...] = ()

    @property
    def spellings(self) -> tuple[str, ...]:
        """The name and its aliases."""
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class NameMatch:
    """A name found in a text: how, how strongly (0-100 lexical, cosine for embedding) and
    the words that matched (the whole text for an embedding match)."""

    key: str
    name: str
    how: str
    score: float
    fragment: str


@dataclass(frozen=True)
class _Spelling:
    key: str
    name: str
    words: tuple[str, ...]
    compact: str


def lexical_score(text: str, name: str, aliases: Sequence[str] = ()) -> tuple[float, str]:
    """Best exact-or-fuzzy score (0-100) of ``name`` (or an alias) in ``text``, and the
    matching words."""
    variants = canonical_variants(text)
    scored = [
        _best_lexical(variants, sp) for sp in _spellings([NameEntry("", name, tuple(aliases))])
    ]
    return max(scored, default=(0.0, ""))


def _spellings(entries: Iterable[NameEntry]) -> list[_Spelling]:
    out = []
    for e in entries:
        for s in e.spellings:
            words = tuple(canonical_variants(s)[0])
            if words:
                out.append(_Spelling(e.key, e.name, words, "".join(words)))
    return out


def _best_lexical(variants: list[list[str]], sp: _Spelling) -> tuple[float, str]:
    k = len(sp.words)
    fuzzy_ok = len(sp.compact) >= (MIN_FUZZY_LENGTH if k > 1 else MIN_FUZZY_LENGTH_ONE_WORD)
    best, frag = 0.0, ""
    for toks in variants:
        for size in range(max(1, k - 1), k + 2):
            if size > len(toks):
                continue
            for i in range(len(toks) - size + 1):
                window = toks[i : i + size]
                # "spider a man" is not "spiderman": a stop word the name lacks breaks it.
                if any(w in STOP_WORDS and w not in sp.words for w in window):
                    continue
                joined = "".join(window)
                if joined == sp.compact:
                    return 100.0, " ".join(window)
                if fuzzy_ok:
                    s = fuzz.ratio(joined, sp.compact, score_cutoff=best)
                    if s > best:
                        best, frag = s, " ".join(window)
        for t in toks:  # the name written as one word, or glued to others
            if t == sp.compact or (len(sp.compact) >= 6 and sp.compact in t):
                return 100.0, t
    return best, frag


class NameMatcher:
    """Finds registered names in texts.

    Parameters
    ----------
    entries
        What to recognise.
    fuzzy_threshold
        Lexical score (0-100, rapidfuzz ratio) at or above which a window matches.
    embedding_threshold
        Cosine similarity of text and name at or above which the text matches (None: off).
    embedder
        Returns the sentence embedder (called on the first embedding match only).
    """

    def __init__(
        self,
        entries: Sequence[NameEntry],
        *,
        fuzzy_threshold: float,
        embedding_threshold: float | None = None,
        embedder: Callable[[], TextEmbedder] | None = None,
    ) -> None:
        self.entries = list(entries)
        self.fuzzy_threshold = fuzzy_threshold
        self.embedding_threshold = embedding_threshold
        self._embedder = embedder
        self._spellings = _spellings(self.entries)
        self._name_vectors: np.ndarray | None = None

    def __bool__(self) -> bool:
        return bool(self._spellings)

    def lexical(self, text: str) -> list[NameMatch]:
        """Entries named in ``text`` exactly or fuzzily (one match per entry, best first)."""
        if not self._spellings:
            return []
        variants = canonical_variants(text)
        found: dict[str, NameMatch] = {}
        for sp in self._spellings:
            score, frag = _best_lexical(variants, sp)
            if score < self.fuzzy_threshold:
                continue
            how = "exact" if score >= 100.0 else "fuzzy"
            prev = found.get(sp.key)
            if prev is None or score > prev.score:
                found[sp.key] = NameMatch(sp.key, sp.name, how, round(score, 1), frag)
        return sorted(found.values(), key=lambda m: -m.score)

    def _vectors(self) -> np.ndarray:
        if self._name_vectors is None:
            assert self._embedder is not None
            self._name_vectors = self._embedder().embed([sp.name for sp in self._spellings])
        return self._name_vectors

    def semantic(self, text: str) -> list[NameMatch]:
        """Entries whose name (or alias) is close to ``text`` in embedding space."""
        if not self._spellings or self.embedding_threshold is None or self._embedder is None:
            return []
        vec = self._embedder().embed_one(text)
        sims = self._vectors() @ vec
        found: dict[str, NameMatch] = {}
        for sp, sim in zip(self._spellings, sims.tolist(), strict=True):
            if sim < self.embedding_threshold:
                continue
            prev = found.get(sp.key)
            if prev is None or sim > prev.score:
                found[sp.key] = NameMatch(sp.key, sp.name, "embedding", round(sim, 3), text)
        return sorted(found.values(), key=lambda m: -m.score)

    def match(self, text: str, *, semantic: bool = True) -> list[NameMatch]:
        """Lexical matches, then (when ``semantic``) embedding matches of other entries."""
        found = self.lexical(text)
        if semantic:
            have = {m.key for m in found}
            found += [m for m in self.semantic(text) if m.key not in have]
        return found


# -- calibration ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelledPair:
    """A text, a name (``Name|alias|...``), and whether the text names it (``split``:
    ``tuning``, ``dev`` or ``held_out``)."""

    text: str
    name: str
    label: bool
    split: str

    @property
    def spellings(self) -> list[str]:
        """The name, then its aliases."""
        return [s.strip() for s in self.name.split("|") if s.strip()]


def read_labels(path: str) -> list[LabelledPair]:
    """Read a CSV of ``text,name,label,split`` rows (label 1 = the text names the name)."""
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        return [
            LabelledPair(r["text"], r["name"], r["label"].strip() == "1", r["split"].strip())
            for r in csv.DictReader(fh)
            if not r["text"].startswith("#")
        ]


def pair_scores(
    pairs: Sequence[LabelledPair], embedder: TextEmbedder
) -> tuple[np.ndarray, np.ndarray]:
    """Lexical scores (0-100) and embedding cosines of each pair."""
    lex = np.array(
        [lexical_score(p.text, p.spellings[0], p.spellings[1:])[0] for p in pairs],
        dtype=np.float64,
    )
    texts = embedder.embed([p.text for p in pairs])
    emb = np.array(
        [float((embedder.embed(p.spellings) @ t).max()) for p, t in zip(pairs, texts, strict=True)],
        dtype=np.float64,
    )
    return lex, emb


def zero_false_positive_threshold(
    scores: np.ndarray, labels: np.ndarray, *, step: float, floor: float
) -> float:
    """The lowest threshold on a grid of ``step`` above every negative's score (and at least
    ``floor``): no false positive on these pairs, as much recall as that allows."""
    neg = scores[~labels]
    top = float(neg.max()) if neg.size else floor
    t = (np.floor(top / step) + 1) * step
    return round(float(max(t, floor)), 6)


def calibrate(pairs: Sequence[LabelledPair], embedder: TextEmbedder) -> dict[str, float]:
    """Thresholds measured on the ``tuning`` pairs (no false positive there)."""
    tune = [p for p in pairs if p.split == "tuning"]
    lex, emb = pair_scores(tune, embedder)
    labels = np.array([p.label for p in tune])
    return {
        "fuzzy_threshold": zero_false_positive_threshold(lex, labels, step=1.0, floor=80.0),
        "embedding_threshold": zero_false_positive_threshold(emb, labels, step=0.01, floor=0.4),
    }


def evaluate(
    pairs: Sequence[LabelledPair],
    embedder: TextEmbedder,
    *,
    fuzzy_threshold: float,
    embedding_threshold: float,
) -> dict[str, dict[str, float]]:
    """Precision and recall per split of lexical, embedding and either, at the thresholds."""
    out: dict[str, dict[str, float]] = {}
    for split in sorted({p.split for p in pairs}):
        part = [p for p in pairs if p.split == split]
        lex, emb = pair_scores(part, embedder)
        y = np.array([p.label for p in part])
        for name, hit in (
            ("lexical", lex >= fuzzy_threshold),
            ("embedding", emb >= embedding_threshold),
            ("either", (lex >= fuzzy_threshold) | (emb >= embedding_threshold)),
        ):
            tp = int((hit & y).sum())
            fp = int((hit & ~y).sum())
            out[f"{split}.{name}"] = {
                "pairs": len(part),
                "positives": int(y.sum()),
                "true_pos": tp,
                "false_pos": fp,
                "precision": round(tp / (tp + fp), 3) if tp + fp else 1.0,
                "recall": round(tp / int(y.sum()), 3) if y.sum() else 1.0,
            }
    return out
