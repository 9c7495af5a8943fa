"""Name matching for opt-outs and protected people: canonical forms, fuzzy windows, and the
thresholds measured on the labelled list this folder keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.generation.names import (
    NameEntry,
    NameMatcher,
    calibrate,
    canonical,
    evaluate,
    lexical_score,
    read_labels,
)
from pipelines.generation.settings import GenerationSettings

LABELS = Path(__file__).parent / "data" / "name_match_labels.csv"


@pytest.mark.parametrize(
    "text",
    [
        "m1ckey mouse dancing on a boat",  # the example
        "MICKEY-MOUSE!",
        "mickeymouse surfing",
        "m.i.c.k.e.y mouse",
        "mic key mouse",
        "miiiickey mouse",
        "\u043cickey \u043couse at the fair",  # Cyrillic look-alikes
        "mick\u200bey mouse",  # zero-width space
        "micky mouse",  # a typo
    ],
)
def test_spelling_games_still_name_the_registered_name(text: str) -> None:
    m = NameMatcher([NameEntry("1", "Mickey Mouse")], fuzzy_threshold=81.0)
    found = m.lexical(text)
    assert [f.key for f in found] == ["1"], (text, canonical(text))


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("a spider and a man in a garden", "Spider-Man"),
        ("spider a man", "Spider-Man"),
        ("putting a cake in the oven", "Putin"),
        ("a barber cutting hair", "Barbie"),
        ("a potter shaping clay", "Harry Potter"),
        ("legolas the elf", "Lego"),
    ],
)
def test_ordinary_words_near_a_name_do_not_match(text: str, name: str) -> None:
    assert lexical_score(text, name)[0] < 81.0


def test_a_number_is_not_read_as_leetspeak_on_its_own() -> None:
    assert canonical("50 cent") == "50 cent"
    assert canonical("c0ca-c0la") == "coca cola"


def test_thresholds_are_the_ones_measured_on_the_tuning_split(embedder: object) -> None:
    """The defaults are what calibration on the tuning pairs gives: change the list or the
    matcher and this says to measure again."""
    pairs = read_labels(str(LABELS))
    got = calibrate(pairs, embedder)  # type: ignore[arg-type]
    s = GenerationSettings()
    assert got == {
        "fuzzy_threshold": s.name_fuzzy_threshold,
        "embedding_threshold": s.name_embedding_threshold,
    }
    figures = evaluate(pairs, embedder, **got)  # type: ignore[arg-type]
    assert figures["tuning.either"]["false_pos"] == 0
    # Held out (looked at once, after the thresholds were fixed); docs/generator.md quotes them.
    assert figures["held_out.lexical"] == {
        "pairs": 40,
        "positives": 21,
        "true_pos": 20,
        "false_pos": 0,
        "precision": 1.0,
        "recall": 0.952,
    }
    assert figures["held_out.either"]["false_pos"] == 1


@pytest.fixture(scope="module")
def embedder() -> object:
    from features.embedding import shared_embedder

    return shared_embedder()
