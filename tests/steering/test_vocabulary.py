"""Typo correction against the catalogue's own words."""

from __future__ import annotations

from steering.vocabulary import CatalogueVocabulary, count_words


def _vocab() -> CatalogueVocabulary:
    captions = [
        ("funny cats on a sofa #funny", 12),
        ("a snake in the garden", 40),
        ("midnight snacks you can make", 9),
        ("quick recipes for dinner", 7),
        ("a typo seen once: recipies", 1),
    ]
    return CatalogueVocabulary(count_words(captions))


def test_word_counts_are_per_clip_and_weighted_by_repeats() -> None:
    counts = count_words([("cats cats dogs", 3), ("cats", 2)])
    assert counts == {"cats": 5, "dogs": 3}


def test_a_word_no_clip_holds_is_read_as_the_nearest_common_one() -> None:
    v = _vocab()
    assert v.correct("fnny") == "funny"
    assert v.correct("recpies") == "recipes"  # two letters swapped: one edit
    # A dropped letter beats a changed one, even against a more common word.
    assert v.correct("snaks") == "snacks"


def test_known_words_short_words_and_far_words_stay_as_typed() -> None:
    v = _vocab()
    assert v.correct("recipies") is None  # some clip holds it (once): not a typo here
    assert v.correct("cat") is None  # a plural's singular is known
    assert v.correct("cast") is None  # four letters: only lengthened, never swapped
    assert v.correct("horror") is None  # nothing close
    assert v.correct("unny") is None  # the first letter must match
