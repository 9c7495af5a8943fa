"""The mood-prompt parser turns what a user types into facets, exclusions and settings."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import pytest

from steering.errors import MoodParseError, MoodTooLongError, SteeringError
from steering.prompt_parser import (
    MAX_EXPIRY_S,
    MAX_PROMPT_CHARS,
    NON_ENGLISH_WARNING,
    TONIGHT_S,
    ParsedMood,
    parse_mood,
)


class Case(NamedTuple):
    """One row of the table: a prompt and everything the parser should make of it."""

    prompt: str
    facets: tuple[str, ...] = ()
    exclusions: tuple[str, ...] = ()
    restrict_to: tuple[str, ...] = ()
    energy: int = 0  # sign of ParsedMood.energy; 0 means None
    expires_in_s: int | None = None
    maturity_max: int | None = None
    less: tuple[str, ...] = ()


def _sign(value: float | None) -> int:
    if value is None:
        return 0
    return 1 if value > 0 else -1


CASES: list[Case] = [
    # --- the brief's own examples -------------------------------------------------------
    Case("something calm, nature, no news", ("calm", "nature"), ("news",), energy=-1),
    Case("cats or cooking", ("cats", "cooking")),
    Case("calm nature videos", ("calm nature",), energy=-1),
    Case("no news", exclusions=("news",)),
    Case("nothing sad", exclusions=("sad",)),
    Case("anything but games", exclusions=("games",)),
    Case("I'm sick of crypto, skip those", exclusions=("crypto",)),
    Case("without politics", exclusions=("politics",)),
    Case("not in the mood for football", exclusions=("football",)),
    Case("food, but nothing about games", ("food",), ("games",)),
    Case("no news or politics", exclusions=("news", "politics")),
    Case("cats but not sad cats", ("cats",), ("sad cats",)),
    Case("only cooking", restrict_to=("cooking",)),
    Case("just dogs", restrict_to=("dogs",)),
    Case("nothing but cats", restrict_to=("cats",)),
    Case("not too intense", energy=-1),
    # --- more negation cues and their scope ----------------------------------------------
    Case("avoid horror", exclusions=("horror",)),
    Case("skip pranks", exclusions=("pranks",)),
    Case("hide celebrity gossip", exclusions=("celebrity gossip",)),
    Case("cooking, except desserts", ("cooking",), ("desserts",)),
    Case("anything except horror", exclusions=("horror",)),
    Case("Exclude true crime", exclusions=("true crime",)),
    Case("no more unboxing", exclusions=("unboxing",)),
    Case("without any violence or gore", exclusions=("violence", "gore")),
    Case("cute animals but no cats or dogs", ("cute animals",), ("cats", "dogs")),
    Case("no news, no politics, no sports", exclusions=("news", "politics", "sports")),
    Case("calm and no news", ("calm",), ("news",), energy=-1),
    Case("cats, not dogs", ("cats",), ("dogs",)),
    Case("cats not dogs", ("cats",), ("dogs",)),
    Case("I hate spiders", exclusions=("spiders",)),
    Case("I'd rather not see any politics", exclusions=("politics",)),
    Case("cats and dogs but nothing with snakes", ("cats", "dogs"), ("snakes",)),
    Case("calm music without lyrics", ("calm music",), ("lyrics",), energy=-1),
    Case("cooking instead of news", ("cooking",), ("news",)),
    Case("tired of cooking shows, give me travel instead", ("travel",), ("cooking shows",)),
    Case("no sad music but happy music is fine", ("happy music",), ("sad music",)),
    Case("nature, nothing sad or violent", ("nature",), ("sad", "violent")),
    Case("nothing too sad please", exclusions=("sad",)),
    Case("no news 🗞️ or politics", exclusions=("news", "politics")),
    Case("sad cats", ("sad cats",)),
    Case("skip those", ()),
    # --- contractions ----------------------------------------------------------------------
    Case("I don't want sports", exclusions=("sports",)),
    Case("don't show news", exclusions=("news",)),
    Case("dont show me politics pls", exclusions=("politics",)),
    Case("I do not want to see war", exclusions=("war",)),
    Case("I’m not into makeup tutorials", exclusions=("makeup tutorials",)),
    Case("I'd love some gardening", ("gardening",)),
    Case("Let's see some ocean waves", ("ocean waves",)),
    # --- polite and filler lead-ins --------------------------------------------------------
    Case("I'm in the mood for cooking", ("cooking",)),
    Case("give me puppies", ("puppies",)),
    Case("show me some travel vlogs please", ("travel vlogs",)),
    Case("can you show me woodworking", ("woodworking",)),
    Case("videos of cats", ("cats",)),
    Case("something about space", ("space",)),
    Case("show me something", ()),
    # --- lists --------------------------------------------------------------------------------
    Case("   cats    and   dogs   ", ("cats", "dogs")),
    Case("cats, dogs, and birds", ("cats", "dogs", "birds")),
    Case("cats & dogs", ("cats", "dogs")),
    Case("cats/dogs", ("cats", "dogs")),
    Case("rock and roll", ("rock and roll",)),
    Case("mac and cheese or pizza", ("mac and cheese", "pizza")),
    Case("stop motion animation", ("stop motion animation",)),
    Case("video games", ("video games",)),
    Case("skip the video games", exclusions=("video games",)),
    # --- restriction ------------------------------------------------------------------------
    Case("cats only", restrict_to=("cats",)),
    Case("only cooking or baking", restrict_to=("cooking", "baking")),
    Case("only cats, no dogs", exclusions=("dogs",), restrict_to=("cats",)),
    Case("nothing nsfw, just gaming", restrict_to=("gaming",), maturity_max=1),
    Case("I just want cats", restrict_to=("cats",)),
    Case("I just want something calm", ("calm",), energy=-1),
    # --- "less of" is a down-weight, not an exclusion ---------------------------------------
    Case("less of the sad stuff", less=("sad",)),
    Case("less of politics, more cooking", ("cooking",), less=("politics",)),
    Case("fewer ads", less=("ads",)),
    Case("not so much news", less=("news",)),
    Case("less intense stuff", energy=-1),
    Case("less news and more science", ("science",), less=("news",)),
    # --- energy -------------------------------------------------------------------------------
    Case("something energetic", ("energetic",), energy=1),
    Case("hype workout clips", ("hype workout",), energy=1),
    Case("very energetic dance", ("energetic dance",), energy=1),
    Case("high energy dance battles", ("high energy dance battles",), energy=1),
    Case("laid-back surfing", ("laid-back surfing",), energy=-1),
    Case("quiet", ("quiet",), energy=-1),
    Case("something slow", ("slow",), energy=-1),
    Case("fast food reviews", ("fast food reviews",)),
    Case("not boring", energy=1),
    Case("nothing too intense for the next hour", energy=-1, expires_in_s=3600),
    Case("something quite calm", ("calm",), energy=-1),
    # --- typos in the closed vocabulary only -------------------------------------------------
    Case("nothin sad", exclusions=("sad",)),
    Case("withuot news", exclusions=("news",)),
    Case("wihtout politics", exclusions=("politics",)),
    Case("onyl cats", restrict_to=("cats",)),
    Case("jsut cats", restrict_to=("cats",)),
    Case("cooking excpet news", ("cooking",), ("news",)),
    Case("relaxign music", ("relaxing music",), energy=-1),
    Case("soothign rain sounds", ("soothing rain sounds",), energy=-1),
    Case("clam nature", ("clam nature",)),  # a real word: topics are never "corrected"
    Case("chili recipes", ("chili recipes",)),
    Case("child friendly cooking", ("cooking",), maturity_max=0),
    # --- case, punctuation, emoji -------------------------------------------------------------
    Case("SOMETHING CALM!!! NO NEWS!!!", ("calm",), ("news",), energy=-1),
    Case("Nature!!!   Calm!!!", ("nature", "calm"), energy=-1),
    Case("🐱 cats 🐶 dogs", ("cats", "dogs")),
    Case("🔥 hype 🔥", ("hype",), energy=1),
    Case("no 🤡 politics", exclusions=("politics",)),
    Case("Let's see some ocean waves 🌊", ("ocean waves",)),
    Case("Cooking. No politics. Only for an hour.", ("cooking",), ("politics",), expires_in_s=3600),
    # --- expiry -------------------------------------------------------------------------------
    Case("chill lofi for 20 minutes", ("chill lofi",), energy=-1, expires_in_s=1200),
    Case("upbeat music for an hour", ("upbeat music",), energy=1, expires_in_s=3600),
    Case("space documentaries for the next 2 hours", ("space documentaries",), expires_in_s=7200),
    Case("cozy baking tonight", ("cozy baking",), energy=-1, expires_in_s=TONIGHT_S),
    Case("funny animals for half an hour", ("funny animals",), expires_in_s=1800),
    Case(
        "no news; calm music; for 30 minutes",
        ("calm music",),
        ("news",),
        energy=-1,
        expires_in_s=1800,
    ),
    Case("for 2 hrs: cozy games", ("cozy games",), energy=-1, expires_in_s=7200),
    Case("for 90 minutes, documentaries", ("documentaries",), expires_in_s=5400),
    Case("cats for an hour and a half", ("cats",), expires_in_s=5400),
    Case("puzzles for a couple of hours", ("puzzles",), expires_in_s=7200),
    Case("magic tricks for 15min", ("magic tricks",), expires_in_s=900),
    Case("Not in the mood for news tonight", exclusions=("news",), expires_in_s=TONIGHT_S),
    Case("20 minute recipes", ("20 minute recipes",)),
    Case("calm stuff, 20 minutes", ("calm",), energy=-1, expires_in_s=1200),
    Case("no sports; only 30 mins", exclusions=("sports",), expires_in_s=1800),
    # --- maturity -----------------------------------------------------------------------------
    Case("family friendly cartoons", ("cartoons",), maturity_max=0),
    Case("kid-safe science", ("science",), maturity_max=0),
    Case("mature comedy", ("comedy",), maturity_max=2),
    Case("grown-up drama", ("drama",), maturity_max=2),
    Case("no mature stuff", maturity_max=1),
    Case("nothing explicit, comedy", ("comedy",), maturity_max=1),
    Case("18+ horror", ("horror",), maturity_max=2),
    Case("no adult cartoons", exclusions=("adult cartoons",), maturity_max=1),
    Case("nothing scary, kid friendly please", exclusions=("scary",), maturity_max=0),
    # --- composition: "X but not Y", "A or B", intensity and settings as whole clauses -------
    Case("funny animals but not cats", ("funny animals",), ("cats",)),
    Case("funny animals except cats", ("funny animals",), ("cats",)),
    Case("recipes or travel", ("recipes", "travel")),
    Case("either cooking or baking", ("cooking", "baking")),
    Case(
        "nothing too intense, keep it family friendly", energy=-1, maturity_max=0
    ),  # the prompt: no facet "keep"
    Case("keep it calm, no news", ("calm",), ("news",), energy=-1),
    Case("make it chill", ("chill",), energy=-1),
    Case("low intensity workouts", ("low intensity workouts",), energy=-1),
    Case("something high energy but not loud", ("high energy",), energy=1),
    # --- emoji, read for their meaning when they stand for a word ----------------------------
    Case("🐱", ("cat",)),
    Case("🐱 or 🐶", ("cat", "dog")),
    Case("cats or 🐱", ("cats",)),
    Case("no 📰", exclusions=("newspaper",)),
    Case("no 📰 please", exclusions=("newspaper",)),
    Case("🍜, no 🎮", ("steaming bowl",), ("video game",)),
    Case("only ⚽", restrict_to=("soccer ball",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.prompt for c in CASES])
def test_prompt_table(case: Case) -> None:
    mood = parse_mood(case.prompt)
    got = Case(
        prompt=case.prompt,
        facets=mood.facets,
        exclusions=mood.exclusions,
        restrict_to=mood.restrict_to,
        energy=_sign(mood.energy),
        expires_in_s=mood.expires_in_s,
        maturity_max=mood.maturity_max,
        less=mood.less,
    )
    assert got == case
    assert mood.language == "en"
    assert NON_ENGLISH_WARNING not in mood.warnings


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 70


@pytest.mark.parametrize(
    "prompt",
    [
        "algo tranquilo, sin noticias",
        "je veux quelque chose de calme",
        "ich möchte etwas ruhiges ohne nachrichten",
        "猫の動画",
        "Кошки и собаки",
    ],
)
def test_non_english_prompt_is_kept_whole_as_one_topic_with_a_warning(prompt: str) -> None:
    mood = parse_mood(f"  {prompt}  ")
    assert mood.facets == (prompt.lower(),)
    assert mood.language == "unknown"
    assert NON_ENGLISH_WARNING in mood.warnings
    assert mood.exclusions == () and mood.restrict_to == () and mood.less == ()
    assert mood.energy is None


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t "])
def test_empty_prompt_says_what_to_write(prompt: str) -> None:
    with pytest.raises(MoodParseError, match="in the mood for"):
        parse_mood(prompt)


@pytest.mark.parametrize("prompt", ["!!!", "→ ← ↑", "123 456", "?!.,;"])
def test_prompt_without_letters_is_rejected(prompt: str) -> None:
    with pytest.raises(MoodParseError, match="no words"):
        parse_mood(prompt)


def test_emoji_only_prompt_is_understood_not_rejected() -> None:
    mood = parse_mood("🙂🙂")
    assert mood.facets == ("slightly smiling",)
    assert parse_mood("👍🏽").facets == ("thumbs up",)  # the skin tone is not a topic


class _Vocabulary:
    """A real catalogue vocabulary over a few words (what ConceptIndex.vocabulary builds)."""

    def __init__(self) -> None:
        from steering.vocabulary import CatalogueVocabulary

        self.inner = CatalogueVocabulary(
            {"funny": 40, "cats": 30, "cooking": 12, "news": 20, "politics": 15}
        )

    def correct(self, word: str) -> str | None:
        return self.inner.correct(word)


def test_topic_typos_are_corrected_against_the_catalogue_and_said_back() -> None:
    mood = parse_mood("fnny cats, no poltics", vocabulary=_Vocabulary())
    assert mood.facets == ("funny cats",)
    assert mood.exclusions == ("politics",)
    assert "read 'fnny' as 'funny'" in mood.warnings
    assert "read 'poltics' as 'politics'" in mood.warnings


def test_words_the_catalogue_holds_or_parser_words_are_never_corrected() -> None:
    vocab = _Vocabulary()
    assert parse_mood("cats, no news", vocabulary=vocab).warnings == ()
    # "cast" is a real word: a four-letter word is only lengthened, never swapped.
    assert parse_mood("cast", vocabulary=vocab).facets == ("cast",)
    assert parse_mood("fnny cats").facets == ("fnny cats",)  # no vocabulary: as typed


def test_too_long_prompt_names_the_limit() -> None:
    with pytest.raises(MoodTooLongError, match=str(MAX_PROMPT_CHARS)):
        parse_mood("cats " * 101)


def test_prompt_at_the_limit_is_accepted() -> None:
    mood = parse_mood("a" * (MAX_PROMPT_CHARS - 4) + " cat")
    assert mood.facets


def test_max_chars_is_configurable() -> None:
    with pytest.raises(MoodTooLongError, match="20"):
        parse_mood("something calm and cozy please", max_chars=20)


def test_errors_share_the_package_base() -> None:
    assert issubclass(MoodTooLongError, MoodParseError)
    assert issubclass(MoodParseError, SteeringError)


def test_not_too_intense_is_only_slightly_calm() -> None:
    mood = parse_mood("not too intense")
    assert mood.energy is not None and -0.5 <= mood.energy < 0
    calm = parse_mood("calm")
    assert calm.energy is not None and calm.energy < mood.energy


def test_energy_stays_in_range() -> None:
    mood = parse_mood("super super hype, very very energetic, extremely intense")
    assert mood.energy is not None and 0 < mood.energy <= 1
    mood = parse_mood("very calm, extremely sleepy, super relaxing")
    assert mood.energy is not None and -1 <= mood.energy < 0


def test_very_long_expiry_is_capped_with_a_warning() -> None:
    mood = parse_mood("cats for 100 hours")
    assert mood.expires_in_s == MAX_EXPIRY_S
    assert any("capped" in w for w in mood.warnings)


def test_prompt_with_nothing_to_steer_by_warns() -> None:
    mood = parse_mood("show me something please")
    assert mood.facets == ()
    assert any("nothing" in w for w in mood.warnings)


def test_only_negative_prompt_has_no_facets_and_no_warning() -> None:
    mood = parse_mood("no news")
    assert mood.facets == ()
    assert mood.warnings == ()


def test_to_dict_is_plain_json_data() -> None:
    mood = parse_mood("calm cats for 20 minutes, no news, less of politics")
    assert mood.to_dict() == {
        "text": "calm cats for 20 minutes, no news, less of politics",
        "facets": ["calm cats"],
        "exclusions": ["news"],
        "less": ["politics"],
        "restrict_to": [],
        "energy": mood.energy,
        "maturity_max": None,
        "expires_in_s": 1200,
        "language": "en",
        "warnings": [],
    }


def test_parsed_mood_is_frozen() -> None:
    mood = parse_mood("cats")
    assert isinstance(mood, ParsedMood)
    with pytest.raises(dataclasses.FrozenInstanceError):
        mood.facets = ("dogs",)  # type: ignore[misc]


def test_text_keeps_what_the_user_typed() -> None:
    assert parse_mood("  Calm CATS 🐱  ").text == "Calm CATS 🐱"


def test_duplicate_facets_are_merged() -> None:
    assert parse_mood("cats, cats and more cats").facets == ("cats",)
