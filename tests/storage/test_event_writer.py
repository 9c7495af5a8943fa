"""The background event writer: a batch is written when its oldest row has waited the maximum
wait, even while rows keep coming (an idle gap never comes under steady traffic)."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from storage.errors import StorageError
from storage.event_writer import BackgroundEventWriter
from storage.store import Store


def _frame(start: int, n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "event_id": [f"imp-{start + i}" for i in range(n)],
            "user_id": [1] * n,
            "item_id": [10] * n,
            "event_type": ["impression"] * n,
            "ts": [datetime(2026, 1, 1)] * n,
        }
    )


def test_writer_commits_while_events_keep_coming(tmp_path: Path) -> None:
    store = Store(tmp_path / "w.duckdb")
    commits: list[int] = []
    streaming = threading.Event()
    streaming.set()
    during: list[int] = []

    def on_commit(batch: pl.DataFrame) -> None:
        commits.append(batch.height)
        if streaming.is_set():
            during.append(batch.height)

    writer = BackgroundEventWriter(store, on_commit=on_commit)  # the engine's defaults
    sent = 0
    deadline = time.monotonic() + 10
    # A page of 20 impressions every 10 ms: never idle for long, far below the row bound.
    while len(during) < 3 and time.monotonic() < deadline:
        writer.submit(_frame(sent, 20))
        sent += 20
        time.sleep(0.01)
    streaming.clear()
    writer.close()
    try:
        assert len(during) >= 3, (
            f"{sent} rows submitted over 10 s of steady traffic, "
            f"{len(during)} batches committed meanwhile"
        )
        assert sum(commits) == sent == store.count("events")
    finally:
        store.close()


def test_flush_writes_what_is_queued_now(tmp_path: Path) -> None:
    store = Store(tmp_path / "w.duckdb")
    writer = BackgroundEventWriter(store, max_wait_s=30)
    try:
        writer.submit(_frame(0, 5))
        writer.submit(_frame(5, 5))
        writer.flush(timeout=20)
        assert store.count("events") == 10  # not 30 s later: flush asks for the write now
        assert writer.pending() == 0 and writer.stats()["written"] == 10
    finally:
        writer.close()
        store.close()


def test_row_bound_splits_a_backlog_into_batches(tmp_path: Path) -> None:
    store = Store(tmp_path / "w.duckdb")
    sizes: list[int] = []
    writer = BackgroundEventWriter(
        store, on_commit=lambda b: sizes.append(b.height), max_wait_s=30, max_batch_rows=40
    )
    try:
        for k in range(10):
            writer.submit(_frame(20 * k, 20))
        writer.flush(timeout=20)
        assert sum(sizes) == 200 and max(sizes) <= 40 and len(sizes) >= 5
    finally:
        writer.close()
        store.close()


@pytest.mark.parametrize(("wait", "rows"), [(0.0, 10), (-1.0, 10), (61.0, 10), (0.2, 0)])
def test_writer_bounds_are_checked(tmp_path: Path, wait: float, rows: int) -> None:
    store = Store(tmp_path / "w.duckdb")
    try:
        with pytest.raises(StorageError, match="need"):
            BackgroundEventWriter(store, max_wait_s=wait, max_batch_rows=rows)
    finally:
        store.close()
