"""Fixtures of the wellbeing tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from storage.store import Store

PLAIN, GENERATED = 1, 2
"""The two clips of the ``store`` fixture: one filmed, one AI-generated."""


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    """A real DuckDB store holding one filmed and one generated clip."""
    s = Store(tmp_path / "x.duckdb")
    s.add_clips(
        pl.DataFrame(
            {
                "item_id": [PLAIN, GENERATED],
                "author_id": [7, 7],
                "caption": ["filmed", "generated"],
                "is_generated": [False, True],
            }
        )
    )
    yield s
    s.close()
