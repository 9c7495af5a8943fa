"""``steerfeed bench --db-url URL --workers 1,2``: the engine over PostgreSQL and served by
several uvicorn workers (issue 16's measures), in the report under ``workers``.

- ``--db-url``: the bench world is built into that PostgreSQL database (it must be empty), or,
  when the URL names a server without a database (``postgresql://postgres@127.0.0.1:5432``),
  into a database ``steerfeed_bench_<random>`` that the bench creates and drops. The vector
  index and model files stay in the data folder, as in a deployment. Every other stage of
  :func:`~pipelines.offline.bench.run_bench` then measures that world.
- ``in_process_postgres_vs_duckdb``: the same world (same seed and clock) is built a second time
  into a DuckDB file in a temp folder, and pages are timed in process on both, alternating
  (PostgreSQL, DuckDB, DuckDB, PostgreSQL) so that the machine's load drifts evenly over both;
  the page path reads memory, so the two should be within 10%. Only with ``--db-url`` and a
  freshly built world (a reused one has no twin).
- ``runs``: for each worker count N, ``steerfeed serve --workers N`` on the world, pages
  (``GET /v1/feed``) and then event batches (``POST /v1/events``) from ``wrk`` in its own
  process at the same concurrency and duration for every N (the load generator of the HTTP
  part, :func:`~pipelines.offline.bench._wrk_load`); the memory of each worker process from
  ``/proc`` (RSS counts pages shared between workers in each; PSS shares them out); the follow
  lag from the server's ``/metrics`` histogram ``steerfeed_follow_lag_seconds``; the load
  average before and after each run.
- ``pages_per_s_ratio_vs_1``: pages/s with N workers over pages/s with one (target >= 1.7 for
  N=2 over PostgreSQL on a 2-core machine; not expected on DuckDB, which serves with one).
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
import psycopg

from pipelines.offline.bench import (
    WRK_MISSING,
    BenchConfig,
    BenchError,
    _free_port,
    _pct,
    _wait_healthy,
    _wrk_load,
    config_for_report,
    page_pool,
    redact_url,
    run_bench,
    time_pages,
    world_exists,
)
from pipelines.offline.demo import build_demo
from pipelines.serving.engine import open_engine
from pipelines.serving.settings import SteerfeedSettings
from storage.factory import open_store

logger = logging.getLogger(__name__)

FOLLOW_LAG_METRIC = "steerfeed_follow_lag_seconds"
"""The histogram the event-log follower exports: seconds from an event's commit by one worker
to its application in another worker's state (label ``kind``: ``events`` or ``changes``)."""

TARGET_RATIO_2_TO_1 = 1.7
TARGET_PG_TO_DUCKDB_P50 = 1.10
DB_PREFIX = "steerfeed_bench_"


def parse_workers(text: str) -> list[int]:
    """``"1,2"`` -> ``[1, 2]`` (empty text: no workers part); :class:`ValueError` otherwise."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        msg = f"--workers takes comma-separated worker counts, e.g. 1,2; got {text!r}"
        raise ValueError(msg) from None


def names_database(url: str) -> bool:
    """Whether a PostgreSQL URL names a database (``.../db``) rather than only a server."""
    return urlsplit(url).path.strip("/") != ""


@contextmanager
def bench_database(url: str | None) -> Iterator[str | None]:
    """The database the bench world goes into: ``url`` itself when it names one; when it names
    only a server, a database ``steerfeed_bench_<random>`` created there and dropped after."""
    if url is None or names_database(url):
        yield url
        return
    name = f"{DB_PREFIX}{uuid.uuid4().hex[:12]}"
    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
    logger.info("bench database %s created", name)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
        logger.info("bench database %s dropped", name)


@contextmanager
def store_url_env(url: str | None) -> Iterator[None]:
    """``STEERFEED_DB_URL`` set to ``url`` (unset for ``None``: the data folder's DuckDB file)
    while the block runs, for everything that reads the settings from the environment (the
    demo build, the engine, the servers started as child processes)."""
    before = os.environ.get("STEERFEED_DB_URL")
    if url is None:
        os.environ.pop("STEERFEED_DB_URL", None)
    else:
        os.environ["STEERFEED_DB_URL"] = url
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("STEERFEED_DB_URL", None)
        else:
            os.environ["STEERFEED_DB_URL"] = before


def run_workers_bench(
    cfg: BenchConfig, data_dir: Path, *, progress: bool = False
) -> dict[str, Any]:
    """The whole bench of :func:`run_bench` on the store ``cfg.db_url`` names (DuckDB without
    it), plus the ``workers`` part described in this module's docstring."""
    data_dir = Path(data_dir)
    t_all = time.perf_counter()
    with bench_database(cfg.db_url) as db_url, store_url_env(db_url):
        store_name = redact_url(db_url) if db_url else "duckdb"
        part: dict[str, Any] = {
            "store": store_name,
            "counts": list(cfg.workers),
            "loadavg_before": _loadavg(),
        }
        # Build here (not in run_bench) so that the DuckDB twin gets the same clock, and the
        # in-process comparison runs before training changes the scorer of one of the two.
        build: dict[str, Any] | None = None
        if not (cfg.reuse and world_exists(data_dir)):
            now = datetime.now(UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)
            build = build_demo(
                data_dir,
                n_users=cfg.users,
                n_clips=cfg.clips,
                n_events=cfg.events,
                seed=cfg.seed,
                progress=progress,
                now=now,
            )
            if db_url is not None:
                part["in_process_postgres_vs_duckdb"] = compare_stores_in_process(
                    cfg, data_dir, db_url, now=now, progress=progress
                )
        if "in_process_postgres_vs_duckdb" not in part:
            part["in_process_postgres_vs_duckdb"] = {
                "skipped": "needs --db-url (the world on PostgreSQL)"
                if db_url is None
                else "a reused world has no DuckDB twin built with the same seed and clock"
            }
        report = run_bench(cfg.model_copy(update={"reuse": True}), data_dir, progress=progress)
        report["config"] = config_for_report(cfg)
        if build is not None:
            report["build"] = build
        if cfg.workers:
            wrk = shutil.which("wrk")
            if wrk is None:
                logger.warning(WRK_MISSING)
                part["skipped"] = WRK_MISSING
            else:
                part.update(serve_with_workers(cfg, data_dir, db_url, wrk))
        part["loadavg_after"] = _loadavg()
        report["workers"] = part
    report["total_s"] = round(time.perf_counter() - t_all, 1)  # the whole run, builds included
    return report


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- the same world in process on PostgreSQL and on DuckDB ---------------------------------------
def _world_digest(store: Any) -> dict[str, int]:
    """Counts and id sums that two builds of one world share (and two worlds almost never)."""
    row = store.query(
        "SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM clips) AS clips, "
        "(SELECT count(*) FROM events) AS events, "
        "(SELECT coalesce(sum(item_id), 0) FROM events) AS event_item_sum, "
        "(SELECT coalesce(sum(author_id), 0) FROM clips) AS clip_author_sum"
    ).row(0, named=True)
    return {k: int(v) for k, v in row.items()}


def compare_stores_in_process(
    cfg: BenchConfig, pg_dir: Path, pg_url: str, *, now: datetime, progress: bool = False
) -> dict[str, Any]:
    """Build ``pg_dir``'s world again into a DuckDB file (same seed and clock) and time pages in
    process on both, alternating; return both latencies and the ratio of their p50s."""
    settings = SteerfeedSettings()
    with tempfile.TemporaryDirectory(prefix="sf-bench-duckdb-") as tmp:
        duck_dir = Path(tmp) / "world"
        t0 = time.perf_counter()
        with store_url_env(None):
            build_demo(
                duck_dir,
                n_users=cfg.users,
                n_clips=cfg.clips,
                n_events=cfg.events,
                seed=cfg.seed,
                progress=progress,
                now=now,
            )
        twin_s = time.perf_counter() - t0
        where = {"postgres": (pg_dir, pg_url), "duckdb": (duck_dir, None)}
        digests = {}
        for name, (_d, url) in where.items():
            store = open_store(url or str(duck_dir / "steerfeed.duckdb"))
            try:
                digests[name] = _world_digest(store)
            finally:
                store.close()
        steady: dict[str, list[float]] = {"postgres": [], "duckdb": []}
        loads: dict[str, list[float]] = {"postgres": [], "duckdb": []}
        per_round = max(10, cfg.pages // 2)
        # Each round times the same users in the same order on both (one seed per round).
        for rnd, name in enumerate(("postgres", "duckdb", "duckdb", "postgres")):
            d, url = where[name]
            storage = settings.storage.model_copy(update={"data_dir": d, "db_url": url})
            t1 = time.perf_counter()
            engine = open_engine(d, settings.model_copy(update={"storage": storage}))
            loads[name].append(time.perf_counter() - t1)
            try:
                rng = np.random.default_rng(cfg.seed + 1000 + rnd // 2)
                users = np.asarray(sorted(engine.state.profiles.users), dtype=np.int64)
                pool = page_pool(users, per_round, rng)
                steady[name].extend(time_pages(engine, pool, per_round, rng).steady_ms)
            finally:
                engine.close()
    out: dict[str, Any] = {
        "same_world": digests["postgres"] == digests["duckdb"],
        "world": digests["postgres"],
        "duckdb_twin_build_s": round(twin_s, 1),
        "order": "postgres, duckdb, duckdb, postgres",
    }
    for name in ("postgres", "duckdb"):
        out[name] = {
            **(_pct(steady[name]) if steady[name] else {"n": 0}),
            "state_load_s": round(float(np.mean(loads[name])), 2),
        }
    if steady["postgres"] and steady["duckdb"]:
        ratio = out["postgres"]["p50_ms"] / out["duckdb"]["p50_ms"]
        out["p50_ratio_postgres_to_duckdb"] = round(ratio, 3)
        out["target_ratio_at_most"] = TARGET_PG_TO_DUCKDB_P50
    return out


# -- serving with N workers ---------------------------------------------------------------------
def serve_with_workers(
    cfg: BenchConfig, data_dir: Path, db_url: str | None, wrk: str
) -> dict[str, Any]:
    """For each worker count in ``cfg.workers``: start ``steerfeed serve --workers N`` on the
    world, drive pages and then event batches from wrk, read memory and the follow lag; stop
    it. Return the runs and the throughput ratios against one worker."""
    store = open_store(db_url or str(data_dir / "steerfeed.duckdb"))
    try:
        service_key = store.create_api_key("service")
        admin_key = store.create_api_key("admin")  # /metrics is for operators
        users = store.query("SELECT user_id FROM users ORDER BY 1")["user_id"].to_list()
        items = store.query("SELECT item_id FROM clips ORDER BY 1")["item_id"].to_list()
    finally:
        store.close()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sf-bench-workers-") as tmp:
        ids_dir = Path(tmp)
        (ids_dir / "users.txt").write_text("\n".join(str(int(u)) for u in users) + "\n")
        (ids_dir / "items.txt").write_text("\n".join(str(int(i)) for i in items) + "\n")
        for n in cfg.workers:
            runs.append(_one_run(cfg, data_dir, n, wrk, ids_dir, service_key, admin_key))
    out: dict[str, Any] = {
        "client": f"wrk -t1 -c{cfg.http_concurrency}, {max(1, round(cfg.http_seconds))} s each",
        "runs": runs,
    }
    one = next((r for r in runs if r["workers"] == 1), None)
    if one is not None and one["pages"]["requests_per_s"] > 0:
        out["pages_per_s_ratio_vs_1"] = {
            str(r["workers"]): round(
                r["pages"]["requests_per_s"] / one["pages"]["requests_per_s"], 3
            )
            for r in runs
            if r["workers"] != 1
        }
        out["target_ratio_2_to_1"] = TARGET_RATIO_2_TO_1
    return out


def _one_run(
    cfg: BenchConfig,
    data_dir: Path,
    n: int,
    wrk: str,
    ids_dir: Path,
    service_key: str,
    admin_key: str,
) -> dict[str, Any]:
    log = ids_dir / f"serve-{n}.log"
    run: dict[str, Any] = {"workers": n, "loadavg_before": _loadavg()}
    metrics_dir = ids_dir / f"metrics-{n}"
    extra = {}
    if n > 1:  # each run its own multiprocess metrics folder: the histogram starts empty
        metrics_dir.mkdir()
        extra["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    t0 = time.perf_counter()
    proc, url = start_workers(data_dir, n, log_path=log, extra_env=extra)
    try:
        run["server_start_s"] = round(time.perf_counter() - t0, 1)
        t1 = time.perf_counter()
        wait_all_ready(url, n)
        run["ready_s"] = round(time.perf_counter() - t1, 1)
        # An untimed warm-up at the same concurrency: every worker loads its models and caches.
        warm = cfg.model_copy(update={"http_seconds": min(2.0, cfg.http_seconds)})
        _wrk_load(wrk, url, service_key, ids_dir, "pages", warm)
        run["pages"] = _wrk_load(wrk, url, service_key, ids_dir, "pages", cfg)
        run["events"] = _wrk_load(wrk, url, service_key, ids_dir, "events", cfg)
        run["memory"] = workers_memory(proc.pid, n)
        run["follow_lag"] = follow_lag(_metrics_text(url, admin_key))
    finally:
        stop_workers(proc)
        text = log.read_text(errors="replace")
        run["server_errors_logged"] = text.count("Traceback")
        # what they were (the last line of each traceback), so a run says without its log
        run["server_errors"] = sorted(set(_ERROR_LINE.findall(text)))[:5]
        run["loadavg_after"] = _loadavg()
    logger.info(
        "workers=%d: %.1f pages/s (p50 %.0f ms, p99 %.0f ms), %.0f events/s",
        n,
        run["pages"]["requests_per_s"],
        run["pages"]["p50_ms"],
        run["pages"]["p99_ms"],
        run["events"].get("events_per_s", 0.0),
    )
    return run


_ERROR_LINE = re.compile(r"^((?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception): .{0,200})", re.M)


def start_workers(
    data_dir: Path, n: int, *, log_path: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``steerfeed serve --workers n`` (no scheduler) on ``data_dir`` in a new session
    and wait until ``/healthz`` answers; return the process and its base URL. The store is the
    one ``STEERFEED_DB_URL`` names in this process's environment."""
    port = _free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        **(extra_env or {}),
    }
    cmd = [sys.executable, "-m", "api.cli", "serve", "--data-dir", str(data_dir)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(n), "--no-scheduler"]
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(  # noqa: S603 (this interpreter running steerfeed)
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
    except Exception:
        stop_workers(proc)
        raise
    return proc, url


def stop_workers(proc: subprocess.Popen[bytes], *, timeout_s: float = 60.0) -> None:
    """SIGTERM the server (uvicorn's supervisor stops its workers); past ``timeout_s``, SIGKILL
    its process group (its own session, so only what it started)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning("server %d did not stop in %.0f s; killing it", proc.pid, timeout_s)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # any worker left behind by a supervisor killed
    proc.wait()


def wait_all_ready(url: str, n: int, *, timeout_s: float = 600.0) -> None:
    """Wait until ``/readyz`` answers 200 on 3*n fresh connections in a row: each connection
    goes to whichever worker accepts it, so a run of them is likely to have asked every worker
    (each builds its concept catalogue after start-up)."""
    need = 3 * n
    ok = 0
    deadline = time.monotonic() + timeout_s
    while ok < need:
        if time.monotonic() > deadline:
            msg = f"{url} not ready on {need} probes in a row after {timeout_s:.0f} s"
            raise BenchError(msg)
        try:
            ready = httpx.get(url + "/readyz", timeout=10.0).status_code == 200
        except httpx.HTTPError:
            ready = False
        ok = ok + 1 if ready else 0
        if not ready:
            time.sleep(0.5)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def _proc_memory_mb(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM (peak RSS) and PSS of one process, in MB."""
    fields: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(rest.split()[0]) / 1024
    pss = 0.0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) / 1024
                    break
    except OSError:
        pss = math.nan
    return {
        "rss_mb": round(fields.get("VmRSS", 0.0), 1),
        "peak_rss_mb": round(fields.get("VmHWM", 0.0), 1),
        "pss_mb": round(pss, 1),
    }


def worker_pids(server_pid: int, n: int) -> list[int]:
    """The processes that serve: the server itself with one worker; with several, uvicorn's
    spawned children (not its supervisor, nor multiprocessing's resource tracker)."""
    if n == 1:
        return [server_pid]
    workers = []
    for pid in _children(server_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            workers.append(pid)
    return workers


def workers_memory(server_pid: int, n: int) -> dict[str, Any]:
    """Memory of each worker process (and of uvicorn's supervisor with several), read from
    ``/proc`` now; per worker: the sum over workers divided by their number."""
    pids = worker_pids(server_pid, n)
    each = []
    for pid in pids:
        try:
            each.append({"pid": pid, **_proc_memory_mb(pid)})
        except OSError:  # gone meanwhile
            continue
    out: dict[str, Any] = {"workers_found": len(each), "each": each}
    if each:
        for key in ("rss_mb", "pss_mb", "peak_rss_mb"):
            total = sum(e[key] for e in each)
            out[f"{key}_sum"] = round(total, 1)
            out[f"{key}_per_worker"] = round(total / len(each), 1)
    if n > 1:
        with suppress(OSError):
            out["supervisor"] = _proc_memory_mb(server_pid)
    return out


# -- the follow lag from /metrics ----------------------------------------------------------------
def _metrics_text(url: str, admin_key: str) -> str | None:
    try:
        r = httpx.get(
            url + "/metrics", headers={"Authorization": f"Bearer {admin_key}"}, timeout=30.0
        )
    except httpx.HTTPError as exc:
        logger.warning("GET /metrics failed: %s", exc)
        return None
    if r.status_code != 200:
        logger.warning("GET /metrics answered %d: %s", r.status_code, r.text[:200])
        return None
    return r.text


_BUCKET = re.compile(
    rf"^{FOLLOW_LAG_METRIC}_bucket\{{(?P<labels>[^}}]*)\}}\s+(?P<value>\S+)", flags=re.M
)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of a cumulative histogram ``[(upper bound, count), ...]`` as
    Prometheus's ``histogram_quantile`` estimates it (linear within the bucket; the highest
    finite bound when it falls in ``+Inf``); ``None`` without observations."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def follow_lag(metrics_text: str | None) -> dict[str, Any]:
    """p50/p99 of ``steerfeed_follow_lag_seconds`` per ``kind`` and over all kinds, from a
    Prometheus text exposition; null with the reason when the metric is not there."""
    out: dict[str, Any] = {"metric": FOLLOW_LAG_METRIC, "p50_s": None, "p99_s": None}
    if metrics_text is None:
        out["reason"] = "GET /metrics did not answer (see the log)"
        return out
    per_kind: dict[str, dict[float, float]] = {}
    for found in _BUCKET.finditer(metrics_text):
        labels = dict(_LABEL.findall(found.group("labels")))
        le = labels.get("le")
        if le is None:
            continue
        bound = math.inf if le == "+Inf" else float(le)
        counts = per_kind.setdefault(labels.get("kind", ""), {})
        counts[bound] = counts.get(bound, 0.0) + float(found.group("value"))
    if not per_kind:
        out["reason"] = (
            f"the server exports no {FOLLOW_LAG_METRIC} (no event-log follower in this build, "
            "or one worker: nothing to follow)"
        )
        return out
    total: dict[float, float] = {}
    kinds: dict[str, Any] = {}
    for kind, counts in sorted(per_kind.items()):
        buckets = list(counts.items())
        for bound, c in buckets:
            total[bound] = total.get(bound, 0.0) + c
        kinds[kind] = {
            "n": int(max(counts.values())),
            "p50_s": _round(histogram_quantile(0.5, buckets)),
            "p99_s": _round(histogram_quantile(0.99, buckets)),
        }
    out["kinds"] = kinds
    out["n"] = int(max(total.values()))
    out["p50_s"] = _round(histogram_quantile(0.5, list(total.items())))
    out["p99_s"] = _round(histogram_quantile(0.99, list(total.items())))
    if out["n"] == 0:
        out["reason"] = "the histogram is there but observed nothing during the run"
    return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
