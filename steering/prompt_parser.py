"""Turn a typed mood prompt into structure the ranking can use, without an LLM.

A user types what they are in the mood for ("something calm, nature, no news"); `parse_mood`
returns a `ParsedMood`: positive facets to embed, exclusions, down-weights, a restriction,
an energy level, a maturity ceiling and how long the mood lasts.

How it works
------------
1. The text is checked (empty, too long, no letters), normalised (NFKC, lower case, one kind of
   apostrophe) and checked for being English. A prompt that looks non-English is kept whole as
   one facet, with a warning (the multilingual embedding may still make sense of it).
2. Duration phrases ("for 20 minutes", "for the next 2 hours", "tonight", or a duration that
   is a clause of its own: "calm stuff, 20 minutes") are read and cut out.
3. A small tokenizer yields words, clause breaks (``, ; . ! ? :``) and list breaks (emoji and
   other symbols). Contractions are expanded ("don't" -> "do not").
4. Words that look like typos of the closed cue vocabulary (negation, restriction, energy) are
   corrected with a small edit distance. Free topics are never corrected, and real words that
   sit close to a cue ("clam", "quite", "child") are left alone.
5. Cue phrases are marked: negation ("no", "nothing", "without", "anything but", "sick of"),
   down-weight ("less of", "fewer", "not so much"), restriction ("only", "just",
   "nothing but"), clause breaks ("but", "however"), list breaks ("and", "or") and maturity
   phrases ("family friendly", "mature"). A few fixed phrases ("rock and roll") stay whole.
6. A walk over the marks splits each clause into items. A cue starts a scope that lasts to the
   end of its clause; "and"/"or" separate items inside the scope ("no news or politics"
   excludes both) and "but" or a comma ends it ("cats but not sad cats"). "more" at the start
   of an item goes back to positive ("less news and more science").
7. Each item loses its filler ("show me", "something", "videos", "please") and becomes a facet,
   an exclusion, a down-weight or a restriction. Energy words count towards the energy level
   wherever they appear; an item made only of energy words under a negation or down-weight
   ("not too intense", "less hype") nudges the energy the other way instead of excluding
   anything.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
import unicodedata
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Any, Protocol

import emoji
from rapidfuzz.distance import OSA

from steering.errors import MoodParseError, MoodTooLongError

logger = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 500
"""Longest prompt accepted, in characters, after stripping surrounding whitespace."""

TONIGHT_S = 4 * 3600
"""How long "tonight" / "this evening" lasts: a fixed four hours (the user's clock is unknown)."""

MAX_EXPIRY_S = 24 * 3600
"""Longest duration a mood may ask for; longer ones are capped with a warning."""

NON_ENGLISH_WARNING = "prompt looks non-English; understood as a single topic — English works best"
NOTHING_FOUND_WARNING = (
    "found nothing to steer by (no topic, exclusion, energy or age setting); "
    "the feed stays as it is"
)

# How far a negated or down-weighted energy word moves the energy ("not too intense").
_NEGATED_ENERGY = 0.4


class WordCorrector(Protocol):
    """Corrects a typed word against a vocabulary (the catalogue's own words).

    :class:`steering.vocabulary.CatalogueVocabulary` is the implementation; the parser only
    needs this one method, so it stays free of the catalogue.
    """

    def correct(self, word: str) -> str | None:
        """The vocabulary word ``word`` is most likely a typo of; ``None`` to keep it."""
        ...


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ParsedMood:
    """What a mood prompt asks for.

    Attributes
    ----------
    text : str
        The prompt as typed, without surrounding whitespace.
    facets : tuple of str
        Positive intents, each a short phrase to embed ("calm nature", "cooking").
    exclusions : tuple of str
        Concepts the user does not want at all ("news", "sad cats").
    less : tuple of str
        Concepts to down-weight but not remove ("less of politics").
    restrict_to : tuple of str
        Concepts the feed should be limited to ("only cooking"); kept apart from `facets`.
    energy : float or None
        Wanted energy in [-1, 1]: negative calm, positive energetic, None when not said.
    maturity_max : int or None
        Highest maturity level allowed: 0 all ages, 1 teen / mild, 2 mature; None when not said.
    expires_in_s : int or None
        How long the mood lasts, in seconds; None when not said.
    warnings : tuple of str
        Notes for the user about how the prompt was understood.
    language : str
        ``"en"``, or ``"unknown"`` when the prompt looks non-English.
    """

    text: str
    facets: tuple[str, ...] = ()
    exclusions: tuple[str, ...] = ()
    less: tuple[str, ...] = ()
    restrict_to: tuple[str, ...] = ()
    energy: float | None = None
    maturity_max: int | None = None
    expires_in_s: int | None = None
    warnings: tuple[str, ...] = ()
    language: str = "en"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParsedMood:
        """Read back what :meth:`to_dict` wrote (as stored in the ``moods`` and
        ``standing_rules`` tables); missing keys take their defaults."""
        return cls(
            text=d.get("text", ""),
            facets=tuple(d.get("facets", ())),
            exclusions=tuple(d.get("exclusions", ())),
            less=tuple(d.get("less", ())),
            restrict_to=tuple(d.get("restrict_to", ())),
            energy=d.get("energy"),
            maturity_max=d.get("maturity_max"),
            expires_in_s=d.get("expires_in_s"),
            warnings=tuple(d.get("warnings", ())),
            language=d.get("language", "en"),
        )

    def to_dict(self) -> dict[str, object]:
        """Return the mood as plain JSON-ready data for the API response.

        Returns
        -------
        dict
            Every field, with tuples turned into lists.
        """
        return {
            "text": self.text,
            "facets": list(self.facets),
            "exclusions": list(self.exclusions),
            "less": list(self.less),
            "restrict_to": list(self.restrict_to),
            "energy": self.energy,
            "maturity_max": self.maturity_max,
            "expires_in_s": self.expires_in_s,
            "language": self.language,
            "warnings": list(self.warnings),
        }


# --------------------------------------------------------------------------------------------
# Vocabulary (closed lists; only these are ever fuzzy-matched)
# --------------------------------------------------------------------------------------------


class _Kind(Enum):
    WORD = "word"
    NEG = "neg"
    LESS = "less"
    ONLY = "only"
    CLAUSE = "clause"
    LIST = "list"
    MATURITY = "maturity"
    MORE = "more"


def _phrases(*texts: str) -> list[tuple[str, ...]]:
    return [tuple(t.split()) for t in texts]


_CUES: dict[tuple[str, ...], _Kind] = {
    **dict.fromkeys(
        _phrases(
            "no", "not", "nothing", "none", "never", "without", "except", "avoid", "avoiding",
            "skip", "hide", "exclude", "excluding", "minus", "hate", "dislike", "nope",
            "anything but", "everything but", "anything except", "everything except",
            "sick of", "tired of", "bored of", "bored with", "done with", "fed up with",
            "enough of", "enough with", "instead of", "rather than", "stop showing", "no more",
        ),
        _Kind.NEG,
    ),
    **dict.fromkeys(
        _phrases(
            "less", "less of", "fewer", "not so much", "not as much", "not too much",
            "not so many", "not as many", "cut down on", "cut back on", "tone down",
        ),
        _Kind.LESS,
    ),
    **dict.fromkeys(
        _phrases("only", "just", "exclusively", "solely", "strictly", "nothing but"), _Kind.ONLY
    ),
    **dict.fromkeys(_phrases("more", "more of"), _Kind.MORE),
    **dict.fromkeys(_phrases("but", "however", "though", "although", "whereas"), _Kind.CLAUSE),
    **dict.fromkeys(
        _phrases("and", "or", "nor", "plus", "also", "as well as", "along with"), _Kind.LIST
    ),
}  # fmt: skip

# Fixed phrases whose "and" is not a list break.
_FIXED_PHRASES: frozenset[tuple[str, ...]] = frozenset(
    _phrases(
        "rock and roll", "mac and cheese", "black and white", "salt and pepper",
        "arts and crafts", "fish and chips", "hide and seek", "dungeons and dragons",
        "pros and cons", "r and b", "rhythm and blues", "law and order", "trial and error",
        "q and a", "tom and jerry", "bed and breakfast", "video games", "video game",
    )
)  # fmt: skip

_MATURITY: dict[tuple[str, ...], int] = {
    **dict.fromkeys(
        _phrases(
            "family friendly", "family-friendly", "kid friendly", "kid-friendly",
            "kids friendly", "kids-friendly", "kid safe", "kid-safe", "child friendly",
            "child-friendly", "child safe", "child-safe", "all ages", "for all ages",
            "safe for kids", "for kids", "for children", "g-rated", "g rated",
        ),
        0,
    ),
    **dict.fromkeys(
        _phrases(
            "teen", "teen friendly", "teen-friendly", "teen-safe", "pg-13", "pg", "mild", "sfw",
            "safe for work",
        ),
        1,
    ),
    **dict.fromkeys(
        _phrases(
            "mature", "adult", "adults only", "adult only", "grown-up", "grown up", "grownup",
            "grown-ups", "nsfw", "r-rated", "r rated", "explicit", "edgy",
        ),
        2,
    ),
}  # fmt: skip

# Energy words: value in [-1, 1]. "Weak" words are also common in topics ("fast food",
# "slow cooking", "quiet place") and count only when the item is nothing but energy words.
_ENERGY: dict[tuple[str, ...], float] = {
    ("calm",): -0.8, ("calming",): -0.8, ("calmer",): -0.6, ("chill",): -0.6,
    ("chilled",): -0.6, ("chillout",): -0.6, ("chilled", "out"): -0.6, ("relaxing",): -0.8,
    ("relaxed",): -0.6, ("relax",): -0.7, ("cozy",): -0.5, ("cosy",): -0.5, ("comfy",): -0.5,
    ("soothing",): -0.8, ("peaceful",): -0.8, ("gentle",): -0.5, ("mellow",): -0.6,
    ("sleepy",): -0.9, ("serene",): -0.8, ("tranquil",): -0.8, ("meditative",): -0.8,
    ("zen",): -0.7, ("restful",): -0.8, ("unwind",): -0.7, ("wind", "down"): -0.7,
    ("low-key",): -0.5, ("lowkey",): -0.5, ("low", "key"): -0.5, ("low", "energy"): -0.7,
    ("low-energy",): -0.7, ("laid-back",): -0.6, ("laid", "back"): -0.6,
    ("slow",): -0.5, ("slower",): -0.4, ("quiet",): -0.6, ("quieter",): -0.4,
    ("slow-paced",): -0.6, ("slow", "paced"): -0.6, ("boring",): -0.4,
    ("energetic",): 0.8, ("hype",): 0.9, ("hyped",): 0.9, ("hyper",): 0.8, ("intense",): 0.8,
    ("upbeat",): 0.6, ("exciting",): 0.7, ("excited",): 0.6, ("thrilling",): 0.8,
    ("adrenaline",): 0.9, ("pumped",): 0.8, ("pumped", "up"): 0.8, ("lively",): 0.6,
    ("crazy",): 0.6, ("action-packed",): 0.8, ("action", "packed"): 0.8,
    ("high-energy",): 0.9, ("high", "energy"): 0.9, ("fast-paced",): 0.7,
    ("fast", "paced"): 0.7, ("fast",): 0.6, ("faster",): 0.5, ("loud",): 0.6,
    ("low", "intensity"): -0.6, ("low-intensity",): -0.6, ("high", "intensity"): 0.8,
    ("high-intensity",): 0.8, ("light-hearted",): -0.3, ("lighthearted",): -0.3,
    ("wild",): 0.6, ("rowdy",): 0.7, ("chaotic",): 0.7, ("energizing",): 0.7,
    ("energising",): 0.7, ("winding", "down"): -0.7,
}  # fmt: skip
_WEAK_ENERGY: frozenset[tuple[str, ...]] = frozenset(
    _phrases("slow", "slower", "quiet", "quieter", "boring", "fast", "faster", "loud")
)
_STRONGER = frozenset(
    ["very", "super", "really", "extra", "so", "totally", "ultra", "mega", "extremely",
     "incredibly", "too"]
)  # fmt: skip
_WEAKER = frozenset(
    ["bit", "slightly", "little", "kinda", "somewhat", "mildly", "fairly", "tad", "lil"]
)

# Filler: dropped from the edges of an item ("show me some ... please").
_LEADING_FILLER: frozenset[tuple[str, ...]] = frozenset(
    _phrases(
        "i", "we", "you", "me", "us", "am", "is", "are", "be", "do", "does", "did", "have",
        "has", "got", "can", "could", "would", "will", "should", "want", "wanna", "need",
        "like", "prefer", "fancy", "see", "watch", "watching", "show", "showing", "give",
        "get", "let", "to", "the", "a", "an", "some", "any", "something", "anything", "more",
        "about", "with", "of", "for", "in", "on", "into", "care", "really", "very", "quite",
        "too", "so", "maybe", "also", "please", "pls", "plz", "feeling", "just", "either",
        "those", "these", "that", "this", "them", "it", "they", "ones", "how", "what", "sure",
        "rather",
        "in the mood for", "the mood for", "mood for", "feel like", "kind of", "sort of",
        "a bit of", "a bit", "a little", "a lot of", "lots of", "looking for", "bunch of",
        "how about", "what about", "all about", "any more",
        # "keep it family friendly", "make it chill": the verb only carries the setting
        "keep", "keep it", "keeping", "keeping it", "make", "make it", "make sure", "stay",
        "staying",
    )
)  # fmt: skip
_TRAILING_FILLER: frozenset[tuple[str, ...]] = frozenset(
    _phrases(
        "videos", "video", "vids", "clips", "clip", "stuff", "things", "content", "shorts",
        "reels", "please", "pls", "plz", "thanks", "thx", "today", "now", "instead",
        "anymore", "either", "too", "ones", "lol", "maybe", "those", "these", "that", "this",
        "them", "it", "is fine", "is ok", "is okay", "are fine", "are ok", "are okay",
        "as well", "for now", "right now", "if possible", "thank you", "any more",
    )
)  # fmt: skip
_PRONOUNS = frozenset(["i", "we", "you"])
_VERBS_AFTER_PRONOUN = frozenset(
    ["love", "like", "want", "need", "prefer", "enjoy", "fancy", "am", "are", "would",
     "could", "do", "have", "feel", "wanna", "really", "just", "also", "will", "can", "must",
     "might", "may", "so", "rather"]
)  # fmt: skip
# Removed anywhere in an item, with a preposition that directly follows ("videos of cats").
_NOISE_NOUNS = frozenset(["videos", "video", "vids", "clips", "clip", "stuff", "content"])
_NOISE_PLEASE = frozenset(["please", "pls", "plz"])
_NOISE_PREPOSITIONS = frozenset(["about", "of", "with", "on", "featuring", "showing"])
# "just" before these is an adverb ("I just want something calm"), not a restriction.
_JUST_SKIPS = frozenset(["want", "wanna", "need", "like", "to", "see", "watch", "show", "me"])
_JUST_SOFTENERS = frozenset(
    ["something", "anything", "some", "a", "an", "stuff", "things", "videos", "clips"]
)

_CONTRACTION_BASES = {"ca": "can", "wo": "will", "sha": "shall", "ai": "is"}
_S_IS = frozenset(["it", "that", "what", "there", "here", "he", "she", "who"])
_BARE_CONTRACTIONS: dict[str, tuple[str, ...]] = {
    "dont": ("do", "not"), "doesnt": ("does", "not"), "didnt": ("did", "not"),
    "isnt": ("is", "not"), "arent": ("are", "not"), "wasnt": ("was", "not"),
    "werent": ("were", "not"), "wont": ("will", "not"), "cant": ("can", "not"),
    "im": ("i", "am"), "ive": ("i", "have"), "youre": ("you", "are"), "lets": ("let", "us"),
    "gimme": ("give", "me"), "lemme": ("let", "me"),
}  # fmt: skip

# Targets of typo correction: the closed cue vocabulary only.
_FUZZY_CUES = frozenset(
    ["nothing", "without", "except", "avoid", "skip", "hide", "exclude", "excluding", "none",
     "only", "just", "exclusively", "anything", "everything"]
)  # fmt: skip
_FUZZY_ENERGY = frozenset(
    ["calm", "calming", "chill", "relaxing", "relaxed", "relax", "cozy", "soothing",
     "peaceful", "mellow", "energetic", "intense", "upbeat", "exciting", "hype", "sleepy",
     "tranquil", "serene", "gentle", "lively", "thrilling"]
)  # fmt: skip
# Real words a letter away from a cue: never corrected ("clam chowder", "quite calm").
_NEVER_CORRECT = frozenset(
    ["clam", "clams", "quite", "lovely", "chilly", "chili", "chilli", "child", "exiting",
     "noting", "notting", "notching", "exclusive", "calling", "gentile", "serena", "relaying",
     "smoothing", "hiding", "skips", "calms", "hides", "avoids"]
)  # fmt: skip

# Distinctive function words of other Latin-script languages (none of them English words).
_FOREIGN_MARKERS = frozenset(
    [
        # Spanish
        "algo", "quiero", "quisiera", "nada", "sin", "de", "del", "el", "los", "las", "y",
        "que", "por", "para", "con", "una", "pero", "muy", "más", "sobre", "la", "en", "un",
        # French
        "je", "veux", "voudrais", "quelque", "chose", "le", "les", "des", "du", "et", "pas",
        "avec", "sans", "pour", "une", "rien", "mais", "très", "sur", "ne",
        # German
        "ich", "möchte", "mochte", "etwas", "und", "nicht", "keine", "kein", "ein", "eine",
        "mit", "ohne", "der", "das", "bitte", "nur", "aber", "sehr",
        # Italian and Portuguese
        "voglio", "vorrei", "qualcosa", "niente", "di", "il", "gli", "senza", "che", "della",
        "quero", "coisa", "sem", "não", "nao", "com", "mas",
    ]
)  # fmt: skip
_ENGLISH_MARKERS = frozenset(
    ["the", "and", "or", "not", "some", "something", "anything", "nothing", "i", "me", "my",
     "want", "show", "with", "without", "about", "but", "only", "just", "please", "videos",
     "stuff", "more", "less", "mood", "for", "of", "any", "is", "are", "don't", "dont",
     "give", "in", "to", "a", "an", "like", "watch", "see"]
)  # fmt: skip

_KNOWN_WORDS: frozenset[str] = (
    frozenset(
        w
        for table in (_CUES, _MATURITY, _ENERGY, _LEADING_FILLER, _TRAILING_FILLER)
        for phrase in table
        for w in phrase
    )
    | _STRONGER
    | _WEAKER
    | _NOISE_NOUNS
    | _VERBS_AFTER_PRONOUN
)

_MAX_PHRASE = max(len(p) for p in (*_CUES, *_MATURITY, *_FIXED_PHRASES))

# Words that leave an emoji standing alone (cues and filler, not topics or energy words).
_BOUNDARY_WORDS: frozenset[str] = frozenset(
    w for table in (_CUES, _LEADING_FILLER, _TRAILING_FILLER) for phrase in table for w in phrase
)

# --------------------------------------------------------------------------------------------
# Duration phrases
# --------------------------------------------------------------------------------------------

_NUMBER_WORDS: dict[str, float] = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15,
    "twenty": 20, "thirty": 30, "forty": 40, "sixty": 60, "ninety": 90,
}  # fmt: skip
_NUM = (
    r"\d+(?:\.\d+)?|half\s+an?|an?\s+couple(?:\s+of)?|a\s+few|forty[\s-]five|"
    + "|".join(sorted((w for w in _NUMBER_WORDS if len(w) > 2), key=len, reverse=True))
    + r"|an?"
)
_DURATION_RE = re.compile(
    r"\b(?P<lead>(?:for|during|over|in|within)\s+(?:the\s+)?(?:next|coming|following|another)\s+"
    r"|(?:the\s+)?next\s+|for\s+(?:another\s+)?)"
    rf"(?:(?P<num>{_NUM})\s*(?:more\s+)?)?"
    r"(?P<unit>minutes?|mins?|hours?|hrs?|m|h)(?P<half>\s+and\s+a\s+half)?\b"
)
# A duration standing alone as a clause: "calm stuff, 20 minutes", "no sports; only 30 mins".
_BARE_DURATION_RE = re.compile(
    r"(?:^|(?<=[,;.!?:]))\s*(?P<lead>(?:only|just)\s+)?"
    rf"(?P<num>{_NUM})\s*(?P<unit>minutes?|mins?|hours?|hrs?|m|h)(?P<half>\s+and\s+a\s+half)?"
    r"\s*(?=$|[,;.!?:])"
)
_TONIGHT_RE = re.compile(
    r"\b(?:for\s+)?(?:tonight|tonite|this\s+evening)\b"
    r"|\bfor\s+the\s+(?:rest\s+of\s+the\s+)?(?:night|evening)\b"
)

# --------------------------------------------------------------------------------------------
# Emoji
# --------------------------------------------------------------------------------------------

# An emoji becomes one token, its English name between these brackets ("⟦cat⟧"), until the
# parser knows whether it stands for a word or only decorates one (see _read_emoji).
_EMOJI_OPEN, _EMOJI_CLOSE = "\u27e6", "\u27e7"
_SKIN_TONE_RE = re.compile(r"_(?:medium-light|medium-dark|light|medium|dark)_skin_tone")
# Parts of an emoji's name that say how it is drawn, not what it means ("cat face").
_EMOJI_DROP = frozenset(["face", "button", "symbol", "sign", "mark", "light", "dark"])


def _emoji_name(data: dict[str, str]) -> str:
    """Words of an emoji's English name in the maintained table of the ``emoji`` package
    (``:cat_face:`` -> ``cat``, ``:face_with_tears_of_joy:`` -> ``tears of joy``)."""
    name = _SKIN_TONE_RE.sub("", str(data.get("en", "")).strip(":").lower())
    words = [w for w in re.split(r"[_\s]+", name) if w]
    kept = [w for w in words if w not in _EMOJI_DROP] or words
    while len(kept) > 1 and kept[0] in ("with", "of", "in"):
        kept = kept[1:]
    return "_".join(kept)


def _mark_emoji(text: str) -> str:
    """Replace each emoji (sequences, skin tones and flags included) by a bracketed token."""

    def one(chars: str, data: dict[str, str]) -> str:
        name = _emoji_name(data)
        return f" {_EMOJI_OPEN}{name}{_EMOJI_CLOSE} " if name else " "

    return str(emoji.replace_emoji(text, replace=one))


def _strip_emoji_marks(text: str) -> str:
    return re.sub(f"{_EMOJI_OPEN}[^{_EMOJI_CLOSE}]*{_EMOJI_CLOSE}", " ", text)


def _read_emoji(tokens: Sequence[str]) -> list[str]:
    """Read an emoji for its meaning when it stands for a word ("🐱", "no 📰", "🐱 or 🐶"):
    nothing but breaks, cue words or filler on either side. Next to a word it only decorates
    it ("🐱 cats", "no 🤡 politics") and becomes a list break."""
    out: list[str] = []

    def boundary(j: int, step: int) -> bool:
        while 0 <= j < len(tokens) and tokens[j][0] == _EMOJI_OPEN:
            j += step
        if not 0 <= j < len(tokens):
            return True
        t = tokens[j]
        return t in (_CLAUSE, _LIST) or t in _BOUNDARY_WORDS

    for i, token in enumerate(tokens):
        if token[0] != _EMOJI_OPEN:
            out.append(token)
            continue
        words = token[1:-1].split("_")
        if any(words) and boundary(i - 1, -1) and boundary(i + 1, 1):
            out.extend((_LIST, *words, _LIST))
        else:
            out.append(_LIST)
    return out


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"⟦[^⟧\s]*⟧|[^\W_]+(?:['\-][^\W_]+)*|[,;.!?:()\[\]{}\"\n]|\S")
_CLAUSE_CHARS = frozenset(',;.!?:()[]{}"\n')
_CLAUSE = ","
_LIST = "|"


@dataclasses.dataclass(frozen=True)
class _Mark:
    kind: _Kind
    text: str
    level: int = 0


@dataclasses.dataclass
class _Collected:
    facets: list[str] = dataclasses.field(default_factory=list)
    exclusions: list[str] = dataclasses.field(default_factory=list)
    less: list[str] = dataclasses.field(default_factory=list)
    restrict_to: list[str] = dataclasses.field(default_factory=list)
    energy: list[float] = dataclasses.field(default_factory=list)
    maturity: list[int] = dataclasses.field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def parse_mood(
    text: str, *, max_chars: int = MAX_PROMPT_CHARS, vocabulary: WordCorrector | None = None
) -> ParsedMood:
    """Parse a typed mood prompt into facets, exclusions and settings.

    Parameters
    ----------
    text : str
        What the user typed, e.g. ``"something calm, nature, no news for an hour"``.
    max_chars : int, optional
        Longest prompt accepted, counted after stripping surrounding whitespace.
    vocabulary : WordCorrector, optional
        The catalogue's own words: a topic word that is in neither the parser's vocabulary nor
        the catalogue's is corrected to the catalogue word it is a likely typo of ("fnny" ->
        "funny"), with a warning saying so. Without it topics are taken as typed.

    Returns
    -------
    ParsedMood
        The structured mood. A prompt that looks non-English comes back as one facet holding
        the whole text, ``language="unknown"`` and a warning.

    Raises
    ------
    MoodParseError
        If the prompt is empty, whitespace only, or has no letters and no emoji.
    MoodTooLongError
        If the prompt is longer than `max_chars`.
    """
    started = time.perf_counter()
    stripped = _check(text, max_chars=max_chars)
    normalised = _normalise(_mark_emoji(stripped))
    plain = re.sub(r"\s+", " ", _strip_emoji_marks(normalised)).strip()
    if plain and _looks_non_english(plain):
        mood = _non_english(stripped, plain)
    else:
        mood = _parse_english(stripped, normalised, vocabulary)
    logger.debug(
        "parsed mood prompt chars=%d language=%s facets=%d exclusions=%d less=%d "
        "restrict=%d energy=%s maturity_max=%s expires_in_s=%s warnings=%d ms=%.2f",
        len(stripped), mood.language, len(mood.facets), len(mood.exclusions), len(mood.less),
        len(mood.restrict_to), mood.energy, mood.maturity_max, mood.expires_in_s,
        len(mood.warnings), (time.perf_counter() - started) * 1000,
    )  # fmt: skip
    return mood


# --------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------


def _check(text: str, *, max_chars: int) -> str:
    stripped = text.strip()
    if not stripped:
        msg = (
            "mood prompt is empty; write what you are in the mood for, "
            "e.g. 'something calm, nature, no news'"
        )
        raise MoodParseError(msg)
    if len(stripped) > max_chars:
        msg = (
            f"mood prompt is {len(stripped)} characters; the limit is {max_chars}. "
            "Shorten it to a few topics, e.g. 'cooking and travel, no news'"
        )
        raise MoodTooLongError(msg)
    if not any(ch.isalpha() for ch in stripped) and not emoji.emoji_count(stripped):
        msg = "mood prompt has no words; write what you are in the mood for, e.g. 'cats or cooking'"
        raise MoodParseError(msg)
    return stripped


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    for quote in ("\u2019", "\u2018", "`", "\u00b4", "\u02bc"):
        text = text.replace(quote, "'")
    text = re.sub(r"\b18\s*(?:\+|plus\b)", " adult ", text)
    return re.sub(r"\s+", " ", text).strip()


def _is_latin(ch: str) -> bool:
    code = ord(ch)
    return code < 0x250 or 0x1E00 <= code <= 0x1EFF


def _looks_non_english(text: str) -> bool:
    letters = [ch for ch in text if ch.isalpha()]
    latin = [ch for ch in letters if _is_latin(ch)]
    if len(latin) < 0.5 * len(letters):
        return True
    words = set(re.findall(r"[^\W\d_]+(?:'[^\W\d_]+)?", text))
    foreign = len(words & _FOREIGN_MARKERS)
    english = len(words & _ENGLISH_MARKERS)
    if foreign >= 2 and foreign > english:
        return True
    accented = any(not ch.isascii() for ch in latin)
    return foreign >= 1 and english == 0 and accented


def _non_english(stripped: str, normalised: str) -> ParsedMood:
    kept = "".join(" " if unicodedata.category(ch).startswith("S") else ch for ch in normalised)
    facet = re.sub(r"\s+", " ", kept).strip()
    return ParsedMood(
        text=stripped,
        facets=(facet,) if facet else (),
        warnings=(NON_ENGLISH_WARNING,),
        language="unknown",
    )


def _parse_english(
    stripped: str, normalised: str, vocabulary: WordCorrector | None = None
) -> ParsedMood:
    warnings: list[str] = []
    expires_in_s, rest = _extract_expiry(normalised, warnings)
    tokens = [_correct_typo(t) for t in _read_emoji(_expand_contractions(_tokenise(rest)))]
    if vocabulary is not None:
        tokens = _correct_topic_words(tokens, vocabulary, warnings)
    collected = _Collected()
    _walk(_mark(tokens), collected)

    energy = None
    if collected.energy:
        mean = sum(collected.energy) / len(collected.energy)
        energy = round(max(-1.0, min(1.0, mean)), 2)
    maturity_max = min(collected.maturity) if collected.maturity else None
    mood = ParsedMood(
        text=stripped,
        facets=_dedupe(collected.facets),
        exclusions=_dedupe(collected.exclusions),
        less=_dedupe(collected.less),
        restrict_to=_dedupe(collected.restrict_to),
        energy=energy,
        maturity_max=maturity_max,
        expires_in_s=expires_in_s,
        language="en",
    )
    steers = (
        mood.facets or mood.exclusions or mood.less or mood.restrict_to
        or mood.energy is not None or mood.maturity_max is not None
    )  # fmt: skip
    if not steers:
        warnings.append(NOTHING_FOUND_WARNING)
    if warnings:
        mood = dataclasses.replace(mood, warnings=tuple(warnings))
    return mood


def _extract_expiry(text: str, warnings: list[str]) -> tuple[int | None, str]:
    """Read duration phrases, cut them out (as clause breaks) and return the shortest."""
    found: list[int] = []
    spans: list[tuple[int, int]] = []
    matches = [*_DURATION_RE.finditer(text), *_BARE_DURATION_RE.finditer(text)]
    for match in matches:
        seconds = _duration_seconds(match)
        if seconds is not None:
            found.append(seconds)
            spans.append(match.span())
    for match in _TONIGHT_RE.finditer(text):
        found.append(TONIGHT_S)
        spans.append(match.span())
    for start, end in sorted(spans, reverse=True):
        text = f"{text[:start]} , {text[end:]}"
    if not found:
        return None, text
    seconds = min(found)
    if seconds > MAX_EXPIRY_S:
        warnings.append(f"duration capped at {MAX_EXPIRY_S // 3600} hours")
        seconds = MAX_EXPIRY_S
    if seconds <= 0:
        warnings.append("duration of zero ignored")
        return None, text
    return seconds, text


def _duration_seconds(match: re.Match[str]) -> int | None:
    lead, num, unit = match["lead"], match["num"], match["unit"]
    if num is None and not re.search(r"next|coming|following|another", lead or ""):
        return None  # "for hours": no amount
    if unit in ("m", "h") and (num is None or not num[0].isdigit()):
        return None  # "m" / "h" only right after digits ("15m")
    amount = 1.0 if num is None else _amount(num)
    if match["half"]:
        amount += 0.5
    per_unit = 60 if unit.startswith("m") else 3600
    return round(amount * per_unit)


def _amount(num: str) -> float:
    num = re.sub(r"\s+", " ", num)
    if num[0].isdigit():
        return float(num)
    if num.startswith("half"):
        return 0.5
    if "couple" in num:
        return 2.0
    if "few" in num:
        return 3.0
    if num.startswith("forty"):
        return 45.0 if "five" in num else 40.0
    return _NUMBER_WORDS[num]


def _tokenise(text: str) -> list[str]:
    """Split into words, clause breaks (``,``) and list breaks (``|``, for emoji and symbols)."""
    text = text.replace("&", " and ").replace("+", " and ").replace("/", " or ")
    text = re.sub(r"\s[-\u2013\u2014]+\s|[\u2013\u2014|]", " , ", text)
    tokens: list[str] = []
    for token in _TOKEN_RE.findall(text):
        if token[0] == _EMOJI_OPEN or token[0].isalnum():
            tokens.append(token)
        elif token in _CLAUSE_CHARS:
            tokens.append(_CLAUSE)
        elif unicodedata.category(token).startswith("S"):
            tokens.append(_LIST)
    return tokens


def _expand_contractions(tokens: Iterable[str]) -> list[str]:
    out: list[str] = []
    for token in tokens:
        if token in _BARE_CONTRACTIONS:
            out.extend(_BARE_CONTRACTIONS[token])
        elif "'" not in token:
            out.append(token)
        elif token.endswith("n't"):
            base = token[:-3]
            out.extend((_CONTRACTION_BASES.get(base, base), "not"))
        elif token == "let's":  # noqa: S105 (a word, not a password)
            out.extend(("let", "us"))
        else:
            base, _, tail = token.rpartition("'")
            expanded = {"m": "am", "re": "are", "ve": "have", "ll": "will", "d": "would"}
            if tail in expanded:
                out.extend((base, expanded[tail]))
            elif tail == "s" and base in _S_IS:
                out.extend((base, "is"))
            else:
                out.append(token)
    return out


def _correct_typo(token: str) -> str:
    """Correct a likely typo of a cue word; leave every other word as it is."""
    if len(token) < 4 or not token.isalpha() or token in _KNOWN_WORDS or token in _NEVER_CORRECT:
        return token
    best: list[str] = []
    for target, allowed in _fuzzy_targets(token):
        if _close_enough(token, target, allowed):
            best.append(target)
    return best[0] if len(best) == 1 else token


def _correct_topic_words(
    tokens: Sequence[str], vocabulary: WordCorrector, warnings: list[str]
) -> list[str]:
    """Correct topic words against the catalogue's vocabulary; say what was read how."""
    out: list[str] = []
    for token in tokens:
        if len(token) >= 4 and token.isalpha() and token not in _KNOWN_WORDS:
            fixed = vocabulary.correct(token)
            if fixed and fixed != token:
                warnings.append(f"read {token!r} as {fixed!r}")
                token = fixed
        out.append(token)
    return out


def _fuzzy_targets(token: str) -> Iterable[tuple[str, int]]:
    for target in _FUZZY_CUES:
        yield target, 2 if len(target) >= 7 and len(token) >= 7 else 1
    for target in _FUZZY_ENERGY:
        yield target, 1


def _close_enough(token: str, target: str, allowed: int) -> bool:
    if abs(len(token) - len(target)) > allowed:
        return False
    if _is_adjacent_transposition(token, target):
        return True
    if token[0] != target[0]:
        return False
    if len(token) == 4:
        return False  # four letters: only a swap counts ("onyl"), never "must" -> "just"
    if len(token) == 5 and len(token) == len(target):
        return False  # five letters: no substitution ("child" is not "chill")
    # Optimal string alignment: edits, counting an adjacent swap as one.
    return OSA.distance(token, target, score_cutoff=allowed) <= allowed


def _is_adjacent_transposition(a: str, b: str) -> bool:
    if len(a) != len(b) or a == b:
        return False
    diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    return (
        len(diff) == 2
        and diff[1] == diff[0] + 1
        and a[diff[0]] == b[diff[1]]
        and (a[diff[1]] == b[diff[0]])
    )


def _mark(tokens: Sequence[str]) -> list[_Mark]:
    """Turn tokens into marks, matching the longest cue, maturity or fixed phrase first."""
    marks: list[_Mark] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == _CLAUSE:
            marks.append(_Mark(_Kind.CLAUSE, token))
            i += 1
            continue
        if token == _LIST:
            marks.append(_Mark(_Kind.LIST, token))
            i += 1
            continue
        for n in range(min(_MAX_PHRASE, len(tokens) - i), 0, -1):
            phrase = tuple(tokens[i : i + n])
            text = " ".join(phrase)
            if phrase in _FIXED_PHRASES:
                marks.append(_Mark(_Kind.WORD, text))
            elif phrase in _MATURITY:
                marks.append(_Mark(_Kind.MATURITY, text, _MATURITY[phrase]))
            elif phrase in _CUES:
                kind = _CUES[phrase]
                if phrase == ("just",) and _just_is_adverb(tokens, i + 1):
                    kind = _Kind.WORD
                marks.append(_Mark(kind, text))
            else:
                continue
            i += n
            break
        else:
            marks.append(_Mark(_Kind.WORD, token))
            i += 1
    return marks


def _just_is_adverb(tokens: Sequence[str], start: int) -> bool:
    for token in tokens[start:]:
        if token not in _JUST_SKIPS:
            return token in _JUST_SOFTENERS
    return True


def _walk(marks: Sequence[_Mark], out: _Collected) -> None:
    """Split marks into items; a cue's scope lasts to the end of its clause."""
    mode = _Kind.WORD  # WORD means positive
    item: list[_Mark] = []
    for i, mark in enumerate(marks):
        if mark.kind in (_Kind.WORD, _Kind.MATURITY):
            item.append(mark)
            continue
        if mark.kind is _Kind.MORE:
            if item:  # "don't show more news": just words inside the item
                item.extend(_Mark(_Kind.WORD, w) for w in mark.text.split())
            else:  # "less news and more science": back to positive
                mode = _Kind.WORD
            continue
        if mark.kind is _Kind.ONLY and _has_content(item) and _rest_is_filler(marks, i + 1):
            _flush(item, _Kind.ONLY, out)  # "cats only"
        else:
            _flush(item, mode, out)
            if mark.kind is _Kind.CLAUSE:
                mode = _Kind.WORD
            elif mark.kind in (_Kind.NEG, _Kind.LESS, _Kind.ONLY):
                mode = mark.kind
        item = []
    _flush(item, mode, out)


def _has_content(item: Sequence[_Mark]) -> bool:
    words = [m.text for m in item if m.kind is _Kind.WORD]
    return bool(_strip_filler(words)) or any(m.kind is _Kind.MATURITY for m in item)


def _rest_is_filler(marks: Sequence[_Mark], start: int) -> bool:
    words: list[str] = []
    for mark in marks[start:]:
        if mark.kind is _Kind.MATURITY:
            return False
        if mark.kind is not _Kind.WORD:
            break
        words.append(mark.text)
    return not _strip_filler(words)


def _flush(item: Sequence[_Mark], mode: _Kind, out: _Collected) -> None:
    """File one item under the list its mode says, after taking out filler and settings."""
    if not item:
        return
    levels = [m.level for m in item if m.kind is _Kind.MATURITY]
    words = [m.text for m in item if m.kind is _Kind.WORD]
    negative = mode in (_Kind.NEG, _Kind.LESS)
    terms, energy_only = _energy_terms(words)
    phrase = _strip_filler(words)

    if levels:
        if not negative:
            out.maturity.extend(levels)
        else:
            out.maturity.extend(level - 1 for level in levels if level >= 1)
            if phrase and not energy_only:
                # "no adult cartoons": keep the whole phrase as the thing to avoid
                phrase = _strip_filler([m.text for m in item])

    if negative:
        if terms and energy_only:
            out.energy.extend(-_NEGATED_ENERGY if v > 0 else _NEGATED_ENERGY for v, _ in terms)
            return
        if phrase:
            (out.exclusions if mode is _Kind.NEG else out.less).append(phrase)
        return

    out.energy.extend(v for v, weak in terms if energy_only or not weak)
    if phrase:
        (out.restrict_to if mode is _Kind.ONLY else out.facets).append(phrase)


def _energy_terms(words: Sequence[str]) -> tuple[list[tuple[float, bool]], bool]:
    """Return (value, is_weak) per energy term, and whether the item is only energy words."""
    terms: list[tuple[float, bool]] = []
    rest: list[str] = []
    i = 0
    while i < len(words):
        for n in (2, 1):
            phrase = tuple(words[i : i + n])
            if len(phrase) == n and phrase in _ENERGY:
                value = _ENERGY[phrase]
                before = words[max(0, i - 2) : i]
                if any(w in _STRONGER for w in before):
                    value *= 1.25
                elif any(w in _WEAKER for w in before):
                    value *= 0.6
                terms.append((max(-1.0, min(1.0, value)), phrase in _WEAK_ENERGY))
                i += n
                break
        else:
            if words[i] not in _STRONGER and words[i] not in _WEAKER:
                rest.append(words[i])
            i += 1
    return terms, bool(terms) and not _strip_filler(rest)


def _strip_filler(words: Sequence[str]) -> str:
    """Drop filler from an item and return the phrase that is left ("" when nothing is)."""
    kept: list[str] = []
    skip_preposition = False
    for word in words:
        if word in _NOISE_PLEASE:
            continue
        if word in _NOISE_NOUNS:
            skip_preposition = True
            continue
        if skip_preposition and word in _NOISE_PREPOSITIONS:
            skip_preposition = False
            continue
        skip_preposition = False
        kept.append(word)

    start, after_pronoun = 0, False
    while start < len(kept):
        word = kept[start]
        if after_pronoun and word in _VERBS_AFTER_PRONOUN:
            start += 1
            continue
        n = _filler_length(kept, start, _LEADING_FILLER)
        if not n:
            break
        after_pronoun = word in _PRONOUNS or (after_pronoun and n == 1)
        start += n
    end = len(kept)
    while end > start:
        n = _filler_length_at_end(kept, start, end)
        if not n:
            break
        end -= n
    return " ".join(kept[start:end])


def _filler_length(words: Sequence[str], start: int, table: frozenset[tuple[str, ...]]) -> int:
    for n in range(min(4, len(words) - start), 0, -1):
        if tuple(words[start : start + n]) in table:
            return n
    return 0


def _filler_length_at_end(words: Sequence[str], start: int, end: int) -> int:
    for n in range(min(3, end - start), 0, -1):
        if tuple(words[end - n : end]) in _TRAILING_FILLER:
            return n
    return 0


def _dedupe(items: Iterable[str]) -> tuple[str, ...]:
    """Drop repeats, counting a plural as its singular ("cats or 🐱": one facet)."""
    seen: dict[str, str] = {}
    for item in items:
        key = " ".join(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
                       for w in item.split())  # fmt: skip
        seen.setdefault(key, item)
    return tuple(seen.values())
