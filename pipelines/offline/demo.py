"""Build the demo world into a data directory: store, caption vectors and index."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from pipelines.offline.demo_world import (
    World,
    WorldConfig,
    WorldConfigError,
    build_world,
    cameo_consents,
)
from pipelines.serving.engine import open_engine
from storage.errors import StorageError
from storage.factory import is_postgres_url, open_store
from storage.settings import StorageSettings
from storage.store import Store

logger = logging.getLogger(__name__)


def load_world(store: Store, world: World) -> dict[str, int]:
    """Insert a generated world's tables into a store (events in slices of 1M: one insert of
    20M rows peaks at ~9 GB above the frame itself, for DuckDB's copy and key checks)."""
    events = sum(
        store.append_events(world.events.slice(start, 1_000_000))
        for start in range(0, world.events.height, 1_000_000)
    )
    counts = {
        "users": store.add_users(world.users),
        "clips": store.add_clips(world.clips),
        "follows": store.add_follows(world.follows),
        "blocks": store.add_blocks(world.blocks),
        "events": events,
    }
    # Featured adults' cameo consents: without them a clip showing someone reaches nobody else.
    consents = cameo_consents(world)
    with store.write() as cur:
        cur.register("_consents", consents.to_arrow())
        cur.execute("INSERT INTO cameo_consents BY NAME SELECT * FROM _consents")
        cur.unregister("_consents")
    counts["cameo_consents"] = consents.height
    return counts


#: What a rebuild replaces in a data directory (other files stay).
STORE_FILES = ("steerfeed.duckdb", "steerfeed.duckdb.wal", "vectors")


class DemoError(Exception):
    """The demo world cannot be built as asked (bad sizes, a store in use)."""


def store_holders(data_dir: Path) -> list[str]:
    """Who holds the store or the vector index of ``data_dir`` open: one line per holder.

    Three checks, so that nothing a live process uses is deleted: the processes with a file
    of the store open (Linux ``/proc``, this process included), DuckDB's lock on the database
    file (any platform; its message names the process) and Qdrant Edge's lock on each shard's
    write-ahead log.
    """
    data_dir = Path(data_dir)
    found = _open_by_processes(data_dir)
    db = data_dir / "steerfeed.duckdb"
    if db.exists() and not found:
        try:
            duckdb.connect(str(db)).close()
        except duckdb.Error as exc:
            text = str(exc).lower()
            if "lock" in text or "same database file" in text:  # another process; this one
                found.append(f"{db}: {exc}")
            else:  # a broken file is what a rebuild is for
                logger.warning("cannot open %s (%s); it will be replaced", db, exc)
    vectors = data_dir / "vectors"
    if vectors.is_dir():
        for wal in sorted(vectors.glob("*/wal")):
            if _flock_held(wal):
                found.append(f"{wal}: locked by an open Qdrant Edge shard")
    return found


def _open_by_processes(data_dir: Path) -> list[str]:
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    targets = [(data_dir / name).resolve() for name in STORE_FILES]
    found: list[str] = []
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            fds = list((pid_dir / "fd").iterdir())
        except OSError:  # gone meanwhile, or another user's process
            continue
        links = []
        for fd in fds:
            try:
                links.append(os.readlink(fd))
            except OSError:  # closed meanwhile (the listing's own descriptor, for one)
                continue
        hits = sorted(
            {
                link
                for link in links
                for t in targets
                if link == str(t) or link.startswith(str(t) + os.sep)
            }
        )
        if hits:
            me = " (this process)" if int(pid_dir.name) == os.getpid() else ""
            found.append(f"process {pid_dir.name}{me} has {hits[0]} open")
    return found


def _flock_held(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # (also releases the probe's own lock)
    return False


def reset_data_dir(data_dir: Path) -> None:
    """Remove a previous store and vector index from ``data_dir`` (other files stay).

    Raises :class:`DemoError`, deleting nothing, while any process holds them open: a running
    server would go on acknowledging writes into a deleted file.
    """
    holders = store_holders(data_dir)
    if holders:
        msg = (
            f"the store in {data_dir} is in use; stop the server (or other process) first. "
            + "; ".join(holders)
        )
        raise DemoError(msg)
    for stale in STORE_FILES:
        p = data_dir / stale
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    data_dir.mkdir(parents=True, exist_ok=True)


def build_demo(
    data_dir: Path,
    *,
    n_users: int = 2000,
    n_clips: int = 20000,
    n_events: int = 500_000,
    seed: int = 0,
    progress: bool = False,
    now: datetime | None = None,
    jobs: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Generate the world, store it, embed and index every caption, then run ``jobs`` (e.g.
    ``("author_stats", "train")``: the demo serves a learned ranker from its first page);
    return counts and timings."""
    t0 = time.perf_counter()
    data_dir = Path(data_dir)
    cfg = WorldConfig(
        n_users=n_users,
        n_clips=n_clips,
        n_events=n_events,
        seed=seed,
        now=now or datetime.now(UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0),
    )
    try:
        cfg.validate()  # before anything is deleted
    except WorldConfigError as exc:
        raise DemoError(str(exc)) from exc
    # STEERFEED_DB_URL: the DuckDB file in data_dir by default, or a PostgreSQL database,
    # which must be empty (nothing on a server is deleted here).
    db_url = StorageSettings(data_dir=data_dir).resolved_db_url()
    if is_postgres_url(db_url):
        _check_empty_server(db_url)
    reset_data_dir(data_dir)
    world = build_world(cfg, progress=progress)
    t_world = time.perf_counter() - t0
    store = open_store(db_url)
    counts = load_world(store, world)
    store.checkpoint()
    store.close()
    del world  # the store holds it now; at scale (20M events) the frames are gigabytes
    t_store = time.perf_counter() - t0 - t_world
    engine = open_engine(data_dir)
    try:
        clips = engine.store.query("SELECT * FROM clips ORDER BY item_id")
        engine.index_clips(clips, show_progress=progress)
        t_embed = time.perf_counter() - t0 - t_world - t_store
        if engine.index is not None:
            engine.index.optimize()
        t_jobs = time.perf_counter()
        job_reports = _run_jobs(engine, jobs)
        t_jobs = time.perf_counter() - t_jobs
    finally:
        engine.close()
    total = time.perf_counter() - t0
    report = {
        **counts,
        "seconds": {
            "world": round(t_world, 1),
            "store": round(t_store, 1),
            "embed": round(t_embed, 1),
            "index": round(total - t_world - t_store - t_embed - t_jobs, 1),
            "jobs": round(t_jobs, 1),
            "total": round(total, 1),
        },
    }
    if job_reports:
        report["jobs"] = job_reports
    logger.info("demo built in %.1f s: %s", total, counts)
    return report


def _check_empty_server(db_url: str) -> None:
    """Raise :class:`DemoError` unless the PostgreSQL database holds no world yet."""
    try:
        store = open_store(db_url)
    except StorageError as exc:
        raise DemoError(str(exc)) from exc
    try:
        held = {t: store.count(t) for t in ("users", "clips", "events")}
    finally:
        store.close()
    if any(held.values()):
        msg = (
            f"the PostgreSQL database in STEERFEED_DB_URL already holds a world ({held}); "
            "the demo deletes nothing on a server: point it at an empty database"
        )
        raise DemoError(msg)


def _run_jobs(engine: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """Run the named jobs in order; a failing job is reported, not raised (the demo still
    serves, with the hand-weighted scorer if ``train`` failed)."""
    if not names:
        return {}
    from pipelines.serving.jobs import JobContext, run_job

    out: dict[str, Any] = {}
    for name in names:
        t = time.perf_counter()
        rep = run_job(name, JobContext(engine, options={"progress": True}))
        out[name] = {
            "ok": rep.ok,
            "seconds": round(time.perf_counter() - t, 1),
            **({} if rep.ok else {"message": rep.message}),
        }
        if rep.ok:
            out[name].update(
                {k: v for k, v in rep.counts.items() if isinstance(v, int | float | str | bool)}
            )
        else:
            logger.warning("demo job %s failed: %s", name, rep.message)
    return out
