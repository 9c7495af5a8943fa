"""Build the demo world into a data directory: store, caption vectors and index."""

from __future__ import annotations

import logging
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.demo_world import World, WorldConfig, build_world, cameo_consents
from pipelines.engine import open_engine
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


def reset_data_dir(data_dir: Path) -> None:
    """Remove a previous store and vector index from ``data_dir`` (other files stay)."""
    for stale in ("steerfeed.duckdb", "steerfeed.duckdb.wal", "vectors"):
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
    reset_data_dir(data_dir)
    cfg = WorldConfig(
        n_users=n_users,
        n_clips=n_clips,
        n_events=n_events,
        seed=seed,
        now=now or datetime.now(UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0),
    )
    world = build_world(cfg, progress=progress)
    t_world = time.perf_counter() - t0
    store = Store(data_dir / "steerfeed.duckdb")
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


def _run_jobs(engine: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """Run the named jobs in order; a failing job is reported, not raised (the demo still
    serves, with the hand-weighted scorer if ``train`` failed)."""
    if not names:
        return {}
    from pipelines.jobs import JobContext, load_builtin_jobs, run_job

    load_builtin_jobs()
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
