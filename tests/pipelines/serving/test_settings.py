"""One root settings object: sections per package, unknown options rejected by name."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipelines.serving.settings import FeedSettings, SteerfeedSettings


def test_unknown_section_is_an_error_that_lists_the_valid_ones() -> None:
    with pytest.raises(ValidationError, match=r"unknown settings section.*valid: storage"):
        SteerfeedSettings.model_validate({"storage": {}, "fed": {}})


def test_unknown_option_in_a_section_is_an_error_that_lists_the_valid_ones() -> None:
    with pytest.raises(ValidationError, match=r"max_per_autor.* in feed; valid: default_limit"):
        SteerfeedSettings.model_validate({"feed": {"max_per_autor": 3}})
    with pytest.raises(ValidationError, match="max_per_autor"):
        SteerfeedSettings(feed=FeedSettings.model_validate({"max_per_autor": 3}))


def test_engine_reads_its_sections_from_the_root(engine: object) -> None:
    settings = engine.settings  # type: ignore[attr-defined]
    assert isinstance(settings, SteerfeedSettings)
    assert engine.learned.settings is settings.learned  # type: ignore[attr-defined]
    assert engine.wellbeing.settings is settings.wellbeing  # type: ignore[attr-defined]
    assert engine.generation.settings is settings.generation  # type: ignore[attr-defined]
