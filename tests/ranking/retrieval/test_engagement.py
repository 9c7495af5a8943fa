"""Engagement strength read from the event log: what counts, what vetoes a pair."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from ranking.retrieval.engagement import engagement_from_events
from ranking.retrieval.user_vectors import UserVectorCache, get_user_vectors, put_user_vectors
from storage.store import Store


def _events(rows: list[tuple[int, int, str, float | None, float | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(len(rows))],
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": [r[2] for r in rows],
            "ts": [datetime(2026, 1, 1, 12, i) for i in range(len(rows))],
            "watch_frac": [r[3] for r in rows],
            "weight": [r[4] for r in rows],
        }
    )


def test_long_views_and_positive_actions_count_and_a_report_vetoes(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    store.append_events(
        _events(
            [
                (1, 10, "view", 0.9, 3.0),  # long view with a listen count: 3
                (1, 10, "like", None, None),  # +1
                (1, 11, "view", 0.1, None),  # short view: nothing
                (1, 12, "view", 1.0, None),  # long view without weight: 1
                (1, 12, "report", None, None),  # ... vetoed
                (2, 10, "share", None, None),  # 1.5
                (2, 13, "skip", None, None),  # nothing
            ]
        )
    )
    got = engagement_from_events(store)
    store.close()
    assert got.to_dicts() == [
        {"user_id": 1, "item_id": 10, "weight": 4.0},
        {"user_id": 2, "item_id": 10, "weight": 1.5},
    ]


def test_an_empty_log_gives_an_empty_typed_frame(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    got = engagement_from_events(store)
    store.close()
    assert got.height == 0
    assert got.schema == {"user_id": pl.Int64, "item_id": pl.Int64, "weight": pl.Float64}


def test_user_vectors_round_trip_and_a_new_model_replaces_the_old(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    put_user_vectors(store, "collab", np.array([1, 2]), np.eye(2, 3), model_version="a")
    put_user_vectors(store, "collab", np.array([2]), np.ones((1, 3)), model_version="b")
    got = get_user_vectors(store, "collab")
    cache = UserVectorCache(store, "collab")
    assert set(got) == {2}
    np.testing.assert_allclose(got[2], np.ones(3))
    assert cache.get(1) is None
    assert cache.get(2) is not None
    store.close()
