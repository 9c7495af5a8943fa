"""Deleted data leaves the files: the DuckDB file is rewritten, Qdrant Edge segments are
vacuumed, and Edge shards keep no write-ahead log (checked by grepping the raw bytes)."""

from __future__ import annotations

import json
import struct
import threading
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import qdrant_edge as qe

from storage.errors import IndexUnavailableError
from storage.index.base import VectorSpec
from storage.index.edge import EdgeVectorIndex
from storage.store import Store, StoreBusyError

SECRET = b"zanzibarquokka"
UID = 987_654_321


def _hits(root: Path, needles: tuple[bytes, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        data = p.read_bytes()
        for n in needles:
            if data.count(n):
                out[f"{p.relative_to(root)}:{n!r}"] = data.count(n)
    return out


def _store_with_a_secret(path: Path, n_events: int = 100_000) -> Store:
    """Events over row groups; 50 of them, spread out, are the user's and carry the secret."""
    s = Store(path)
    i = np.arange(n_events)
    mine = i % (n_events // 50) == 7
    features = [
        json.dumps({"q": f"{SECRET.decode()} {k}"}) if m else json.dumps({"q": int(k % 100)})
        for k, m in zip(i.tolist(), mine.tolist(), strict=True)
    ]
    s.append_events(
        pl.DataFrame(
            {
                "event_id": [f"e{k}" for k in i.tolist()],
                "user_id": np.where(mine, UID, i % 1000),
                "item_id": i % 5000,
                "event_type": ["view"] * n_events,
                "ts": [datetime(2026, 1, 1)] * n_events,
                "features": features,
            }
        )
    )
    s.checkpoint()
    return s


def _erase_rows(s: Store) -> None:
    with s.write() as cur:
        cur.execute("DELETE FROM events WHERE user_id = ?", [UID])


def test_deleted_rows_stay_in_the_file_until_it_is_rewritten(tmp_path: Path) -> None:
    s = _store_with_a_secret(tmp_path / "db" / "steerfeed.duckdb")
    assert _hits(tmp_path / "db", (SECRET,))
    _erase_rows(s)
    s._con.execute("FORCE CHECKPOINT")
    # What CHECKPOINT leaves: the reason for rewrite_file (DuckDB 2.0.1).
    assert _hits(tmp_path / "db", (SECRET,)), "DuckDB removed the bytes itself now"
    s.rewrite_file()
    assert _hits(tmp_path / "db", (SECRET, str(UID).encode())) == {}
    assert s.count("events") == 100_000 - 50
    assert not s.rewrite_pending
    s.close()
    again = Store(tmp_path / "db" / "steerfeed.duckdb")  # a valid database, migrations kept
    assert again.count("events") == 100_000 - 50
    assert again.scalar("SELECT count(*) FROM schema_version") > 0
    again.close()


def test_reads_go_on_while_the_file_is_rewritten(tmp_path: Path) -> None:
    s = _store_with_a_secret(tmp_path / "steerfeed.duckdb", n_events=50_000)
    stop = threading.Event()
    errors: list[BaseException] = []
    counts: list[int] = []

    def read() -> None:
        while not stop.is_set():
            try:
                counts.append(int(s.scalar("SELECT count(*) FROM events")))
            except BaseException as exc:  # any failure is the finding
                errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    _erase_rows(s)
    for _ in range(3):
        s.rewrite_file()
    stop.set()
    for t in readers:
        t.join()
    assert errors == [] and counts and set(counts) <= {50_000, 50_000 - 50}
    s.close()


def test_an_open_read_postpones_the_rewrite_to_the_next_open(tmp_path: Path) -> None:
    path = tmp_path / "steerfeed.duckdb"
    s = _store_with_a_secret(path)
    _erase_rows(s)
    held = s.cursor()  # a read that does not end
    with pytest.raises(StoreBusyError, match="still open"):
        s.rewrite_file(wait_s=0.2)
    assert s.rewrite_pending
    held.close()
    assert s.count("events") == 100_000 - 50  # the store works on
    s.close()
    assert _hits(tmp_path, (SECRET,))
    reopened = Store(path)
    assert not reopened.rewrite_pending
    assert _hits(tmp_path, (SECRET,)) == {}
    assert reopened.count("events") == 100_000 - 50
    reopened.close()


def _payloads(n: int, author_of_last: int) -> list[dict[str, object]]:
    return [{"author_id": i % 50, "topics": ["cats"]} for i in range(n - 1)] + [
        {"author_id": author_of_last, "topics": ["cats"]}
    ]


ID_BYTES = (
    str(UID).encode(),
    struct.pack("<q", UID),
    struct.pack("<i", UID),
    struct.pack(">i", UID),
)


def test_deleted_points_leave_the_shard_files(tmp_path: Path) -> None:
    idx = EdgeVectorIndex(tmp_path / "clips")
    idx.ensure({"caption": VectorSpec(8, "cosine")}, integer_fields=("author_id",))
    n = 3000
    rng = np.random.default_rng(0)
    idx.upsert(
        np.arange(n, dtype=np.int64),
        {"caption": rng.standard_normal((n, 8)).astype(np.float32)},
        _payloads(n, UID),
    )
    idx.optimize()
    assert _hits(tmp_path, ID_BYTES)  # the payload and its index hold the author id
    idx.delete(np.array([n - 1]))
    assert _hits(tmp_path, ID_BYTES), "deleting alone clears the segment files now"
    idx.purge()
    assert _hits(tmp_path, ID_BYTES) == {}
    assert idx.count() == n - 1
    idx.close()
    assert not (tmp_path / "clips" / "wal").exists()


def test_a_shard_made_with_a_write_ahead_log_is_rebuilt_without_one(tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    cfg = qe.EdgeConfig(
        vectors={"caption": qe.EdgeVectorParams(size=8, distance=qe.Distance.Cosine)}
    )
    shard = qe.EdgeShard.create(str(folder), cfg)  # as earlier versions made them
    shard.update(qe.UpdateOperation.create_field_index("author_id", qe.PayloadSchemaType.Integer))
    rng = np.random.default_rng(1)
    points = [
        qe.Point(id=i, vector={"caption": rng.standard_normal(8).tolist()}, payload=p)
        for i, p in enumerate(_payloads(500, UID))
    ]
    shard.update(qe.UpdateOperation.upsert_points(points))
    shard.update(qe.UpdateOperation.delete_points([499]))
    shard.flush()
    shard.close()
    assert (folder / "wal").exists() and _hits(folder, ID_BYTES)  # kept by the WAL

    idx = EdgeVectorIndex(folder)
    assert idx.count() == 499
    assert idx.spaces() == {"caption": VectorSpec(8, "cosine")}
    hits = idx.search("caption", rng.standard_normal(8).astype(np.float32), limit=5)
    assert len(hits) == 5
    assert not (folder / "wal").exists() and _hits(tmp_path, ID_BYTES) == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clips", "clips.copylock", "clips.lock"]
    idx.close()
    assert EdgeVectorIndex(folder).count() == 499  # and it reopens as it is


def test_one_instance_holds_a_shard_without_a_write_ahead_log(tmp_path: Path) -> None:
    # Qdrant Edge's WAL used to refuse a second opener; without one the index locks the folder.
    first = EdgeVectorIndex(tmp_path / "clips")
    first.ensure({"caption": VectorSpec(8, "cosine")})
    with pytest.raises(IndexUnavailableError, match="holds it open"):
        EdgeVectorIndex(tmp_path / "clips")
    first.close()
    second = EdgeVectorIndex(tmp_path / "clips")
    assert second.spaces() == {"caption": VectorSpec(8, "cosine")}
    second.close()
