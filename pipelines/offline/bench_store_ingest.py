"""Bulk event ingestion into the store, DuckDB and PostgreSQL in one run.

``python -m pipelines.offline.bench_store_ingest --events 200000 --postgres-url postgresql://...``
writes synthetic events (spread over three months, batches of ``--batch`` rows) through
:meth:`Store.append_events` into a fresh DuckDB file and a fresh PostgreSQL database (created
and dropped here), then repeats the first batch (all repeats), and prints events/s as JSON with
the load average. On PostgreSQL each batch is ``COPY`` into a temporary table, then one
``INSERT ... ON CONFLICT DO NOTHING RETURNING`` into the key table and the partitioned
``events``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import psycopg

from storage.factory import open_store
from storage.store import Store


def synthetic_events(n: int, *, seed: int = 0) -> pl.DataFrame:
    """``n`` events of 50k users on 20k clips over 90 days (views with watch time)."""
    rng = np.random.default_rng(seed)
    start = datetime(2026, 9, 1)
    seconds = rng.integers(0, 90 * 86400, n)
    return pl.DataFrame(
        {
            "event_id": [f"b{i}" for i in range(n)],
            "user_id": rng.integers(1, 50_000, n),
            "item_id": rng.integers(1, 20_000, n),
            "event_type": rng.choice(["impression", "view", "like", "skip"], n),
            "ts": [start + timedelta(seconds=int(s)) for s in seconds],
            "session_id": [f"s{u}" for u in rng.integers(1, 200_000, n)],
            "position": rng.integers(0, 20, n).astype(np.int32),
            "watch_s": rng.random(n) * 30,
            "watch_frac": rng.random(n),
        }
    )


def measure(store: Store, events: pl.DataFrame, batch: int) -> dict[str, Any]:
    """Append ``events`` in batches; then the first batch again (all repeats)."""
    t0 = time.perf_counter()
    new = 0
    for off in range(0, events.height, batch):
        new += store.append_events(events.slice(off, batch))
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    repeats = store.append_events(events.slice(0, batch))
    repeat_s = time.perf_counter() - t1
    assert new == events.height and repeats == 0
    return {
        "events": events.height,
        "seconds": round(seconds, 2),
        "events_per_s": round(events.height / seconds),
        "repeat_batch_ms": round(repeat_s * 1000, 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Run both backends and print the figures as JSON."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=50_000)
    ap.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args(argv)
    events = synthetic_events(args.events)
    out: dict[str, Any] = {"load_before": os.getloadavg(), "batch": args.batch}
    with tempfile.TemporaryDirectory() as tmp:
        duck = open_store(Path(tmp) / "bench.duckdb")
        out["duckdb"] = measure(duck, events, args.batch)
        duck.close()
    dbname = f"steerfeed_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {dbname}".encode())
    try:
        pg = open_store(args.postgres_url.rsplit("/", 1)[0] + "/" + dbname)
        out["postgres"] = measure(pg, events, args.batch)
        out["postgres"]["partitions"] = int(
            pg.scalar("SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass")
        )
        pg.close()
    finally:
        with psycopg.connect(args.postgres_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)".encode())
    out["load_after"] = os.getloadavg()
    sys.stdout.write(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
