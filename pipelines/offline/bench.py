"""``steerfeed bench``: build a world of a given size and measure the engine.

Every number comes from the real engine on a real DuckDB file and Qdrant Edge shard:

- build: world generation, store load, caption embedding and indexing times;
- ``state_load_s``: opening the engine (loading serving state from DuckDB);
- ``train``: training the learned ranker (optional) and whether it was promoted;
- ``in_process``: feed page latency through :meth:`Engine.feed` (p50/p99) with the scorer the
  engine serves (``scorer``), and candidates per page;
- ``ingest_bulk``: events/s through :meth:`Engine.ingest_events` (commit + state update);
- ``http_pages`` / ``http_events``: uvicorn serving the data directory under load from the
  ``wrk`` load generator (a separate process, loopback): pages, and event batches with fresh
  ids; throughput and latency p50/p99 as wrk measures them. Without ``wrk`` on the PATH the
  HTTP part is skipped and ``http_skipped`` says why (no other client stands in for it);
- ``telemetry``: what metrics and tracing add to a page (hook time per page, and page latency
  with them off, metrics only, metrics and tracing, interleaved; see ``bench_telemetry``);
- ``mood_in_process``: :meth:`MoodService.create` (parse, durable store insert, queue the
  expansion) and parsing alone over ``mood_prompts`` distinct prompts (:func:`mood_prompts`,
  a third with words no clip holds), each followed by a page as in life;
- ``mood_prompt``: ``POST /v1/users/{id}/mood`` latency over the same number of other distinct
  prompts as the client sees it, the server's own time (its ``Server-Timing`` header), and the
  page right after each prompt (``next_page``); timed even without wrk;
- ``peak_rss_mb``: peak resident memory of this process and of the server.

:func:`store_scale` measures what one DuckDB file holds (event inserts and serving-state load
at growing event counts).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipelines.offline.bench_telemetry import telemetry_overhead
from pipelines.offline.demo import build_demo
from pipelines.serving.engine import open_engine
from storage.factory import duckdb_path, is_postgres_url, open_store
from storage.settings import StorageSettings

logger = logging.getLogger(__name__)


MAX_WORKERS = 16
"""The most serving workers one bench run starts."""


class BenchConfig(BaseModel):
    """What to build and how hard to push it."""

    model_config = ConfigDict(extra="forbid")

    users: int = Field(default=2000, ge=10)
    clips: int = Field(default=20_000, ge=50)
    events: int = Field(default=200_000, ge=100)
    seed: int = 0
    pages: int = Field(default=500, ge=10, description="in-process pages to time")
    train: bool = Field(default=True, description="train (and maybe promote) the learned ranker")
    bulk_events: int = Field(default=200_000, ge=0, description="events for bulk ingestion")
    http: bool = True
    http_seconds: float = Field(default=15.0, gt=0)
    http_concurrency: int = Field(default=16, ge=1, le=512)
    http_batch: int = Field(default=500, ge=1, le=10_000)
    mood_prompts: int = Field(
        default=20,
        ge=0,
        le=5000,
        description="distinct mood prompts to time, in process and over HTTP",
    )
    telemetry_pages: int = Field(
        default=200, ge=0, description="rounds of the metrics/tracing overhead A/B (0: skip)"
    )
    reuse: bool = Field(default=False, description="measure an existing data dir; do not build")
    db_url: str | None = Field(
        default=None,
        description="a PostgreSQL server or database to hold the world instead of the DuckDB "
        "file (bench_workers.py)",
    )
    workers: list[int] = Field(
        default_factory=list,
        description="serve with each of these uvicorn worker counts in turn (bench_workers.py)",
    )

    @field_validator("db_url")
    @classmethod
    def _postgres_only(cls, url: str | None) -> str | None:
        if url is not None and not is_postgres_url(url):
            msg = (
                f"db_url must be postgresql://user@host:port[/database], got {url!r} "
                "(the DuckDB file in the data folder is the default)"
            )
            raise ValueError(msg)
        return url

    @model_validator(mode="after")
    def _workers_fit_the_store(self) -> BenchConfig:
        bad = [n for n in self.workers if not 1 <= n <= MAX_WORKERS]
        if bad or len(set(self.workers)) != len(self.workers):
            msg = f"workers takes distinct counts from 1 to {MAX_WORKERS}, got {self.workers}"
            raise ValueError(msg)
        if self.db_url is None and any(n > 1 for n in self.workers):
            msg = (
                f"workers {self.workers}: more than one worker needs a PostgreSQL store "
                "(db_url); DuckDB allows one writing process per file"
            )
            raise ValueError(msg)
        return self


# Words for the timed mood prompts: topics the demo world's clips hold, and words no clip holds
# (made up, or typos of topics), so a run times phrases the server has never seen and the typo
# correction's misses as well as its hits.
_MOOD_TOPICS = (
    "cats", "dogs", "cooking", "baking", "travel", "nature", "hiking", "gaming", "football",
    "music", "dance", "comedy", "news", "politics", "finance", "science", "fashion", "fitness",
    "art", "cars", "puppies", "recipes", "space", "history",
)  # fmt: skip
_MOOD_UNSEEN = (
    "zorblat", "quenfish", "plimsy", "vortag", "snerkle", "gravlins", "munderwok", "feltrix",
    "cookng", "travle", "comdey", "sceince", "footbal", "fashon", "hikking", "politcs",
)  # fmt: skip
_MOOD_TEMPLATES = (
    "something calm, {a}, no {b}",
    "funny {a} but no {b}",
    "{a} or {b}",
    "only {a} for 20 minutes",
    "less {a}, more {b}",
    "high energy {a}, nothing about {b}",
    "{a} and {b} tonight",
    "no {a} please",
    "chill {a} videos",
    "not in the mood for {a}",
    "{a} 🎉 but not {b}",
    "quick {a} for the next hour, family friendly",
)


def mood_prompts(n: int, *, seed: int = 0, offset: int = 0) -> list[str]:
    """``n`` distinct mood prompts (composition, negation, restriction, duration, energy, emoji;
    about a third name a word no clip holds). ``offset`` skips that many, so two calls with
    different offsets share no prompt."""
    rng = np.random.default_rng(seed)
    words = (*_MOOD_TOPICS, *_MOOD_UNSEEN)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < offset + n:
        tmpl = _MOOD_TEMPLATES[int(rng.integers(len(_MOOD_TEMPLATES)))]
        a, b = (words[int(i)] for i in rng.choice(len(words), size=2, replace=False))
        text = tmpl.format(a=a, b=b)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out[offset:]


def _pct(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "mean_ms": round(float(a.mean()), 2),
        "n": len(ms),
    }


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    mem_gb = None
    try:
        with open("/proc/meminfo") as f:
            mem_gb = round(int(f.readline().split()[1]) / 1024**2, 1)
    except OSError:
        pass
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores_visible": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_gb": mem_gb,
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }


def _synthetic_events(
    users: np.ndarray, items: np.ndarray, n: int, rng: np.random.Generator, *, start: datetime
) -> pl.DataFrame:
    """``n`` plausible events over the given users and items, with fresh ids."""
    types = np.array(["impression", "view", "like", "skip", "share"])
    kind = types[rng.choice(len(types), size=n, p=[0.55, 0.3, 0.08, 0.05, 0.02])]
    prefix = uuid.uuid4().hex[:8]
    return pl.DataFrame(
        {
            "event_id": [f"b{prefix}-{i}" for i in range(n)],
            "user_id": users[rng.integers(0, len(users), n)],
            "item_id": items[rng.integers(0, len(items), n)],
            "event_type": kind,
            "ts": pl.Series(
                [start + timedelta(seconds=int(s)) for s in rng.integers(0, 86_400, n)],
                dtype=pl.Datetime("us"),
            ),
            "received_at": pl.Series([start] * n, dtype=pl.Datetime("us")),
            "watch_frac": np.where(kind == "view", rng.random(n), np.nan),
        }
    ).with_columns(pl.col("watch_frac").fill_nan(None))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 180.0) -> None:
    import httpx

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            msg = f"server exited with {proc.returncode} before it was healthy"
            raise RuntimeError(msg)
        try:
            if httpx.get(url + "/healthz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    msg = f"server not healthy after {timeout_s:.0f} s"
    raise RuntimeError(msg)


def _wait_warm(url: str, timeout_s: float = 1800.0) -> float:
    """Wait until ``/healthz`` says the concept catalogue is built; return the seconds waited."""
    import httpx

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            health = httpx.get(url + "/healthz", timeout=10.0).json()
        except (httpx.HTTPError, ValueError):
            health = {}
        status = (health.get("steering") or {}).get("concept_catalogue")
        if status in (None, "ready", "empty"):
            break
        time.sleep(0.5)
    return time.monotonic() - t0


def start_server(
    data_dir: Path,
    *,
    port: int | None = None,
    scheduler: bool = False,
    extra_env: dict[str, str] | None = None,
    log_path: Path | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``uvicorn api.http.main:create_app`` on a data directory in a child process and wait
    until ``/healthz`` answers; return the process and its base URL."""
    port = port or _free_port()
    env = {
        **os.environ,
        "STEERFEED_DATA_DIR": str(data_dir),
        "STEERFEED_API_SCHEDULER": "true" if scheduler else "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        **(extra_env or {}),
    }
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(  # noqa: S603 (this interpreter running steerfeed)
        [
            sys.executable,
            "-m",
            "uvicorn",
            "api.http.main:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
    except Exception:
        proc.kill()
        proc.wait()
        raise
    return proc, url


class BenchError(RuntimeError):
    """A bench stage could not run (the load generator failed, the server did not start)."""


WRK_MISSING = (
    "HTTP part skipped: the load generator wrk is not installed (Debian/Ubuntu: "
    "apt-get install wrk; macOS: brew install wrk); --no-http skips it on purpose"
)
"""What the report says (``http_skipped``) when ``wrk`` is not on the PATH."""

# wrk (https://github.com/wg/wrk) drives the server from its own process, one thread and
# ``-c`` connections, each sending its next request when the last one returns (a closed loop,
# like a client); ``request`` builds each request and ``done`` prints the summary as JSON.
# Ids are read from files (a script literal with 1M ids overflows LuaJIT's constant table).
_WRK_COMMON = """
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
local function read_ids(path)
  local ids = {}
  for line in io.lines(path) do ids[#ids + 1] = line end
  return ids
end
function init(args)
  users = read_ids([[%(users)s]])
  items = read_ids([[%(items)s]])
  math.randomseed(%(seed)d + 7919 * tid)
  headers = {["Authorization"] = "Bearer %(key)s", ["Content-Type"] = "application/json"}
  acked = 0
  sent = 0
end
function done(summary, latency, requests)
  local acked_all = 0
  for _, t in ipairs(threads) do acked_all = acked_all + (t:get("acked") or 0) end
  local e = summary.errors
  io.write(string.format(
    'STEERFEED_WRK {"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"status":%%d,"timeout":%%d,"p50_us":%%.1f,"p99_us":%%.1f,"mean_us":%%.1f,"acked":%%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, acked_all))
end
"""

_WRK_PAGES = """
function request()
  local u = users[math.random(#users)]
  return wrk.format("GET", "/v1/feed?user_id=" .. u .. "&limit=20", headers)
end
"""

# Every event id is new (run, thread, counter), so each batch is committed, not deduplicated.
_WRK_EVENTS = """
local kinds = {"impression", "view", "like", "skip"}
function request()
  local parts = {}
  for i = 1, %(batch)d do
    sent = sent + 1
    parts[i] = string.format(
      '{"event_id":"bench-%(run)s-%%d-%%d","user_id":%%s,"item_id":%%s,' ..
      '"event_type":"%%s","watch_frac":%%.3f}',
      tid, sent, users[math.random(#users)], items[math.random(#items)],
      kinds[math.random(#kinds)], math.random())
  end
  return wrk.format("POST", "/v1/events", headers,
                    '{"events":[' .. table.concat(parts, ",") .. ']}')
end
function response(status, headers, body)
  if status == 200 then
    local n = body:match('"accepted"%%s*:%%s*(%%d+)')
    if n then acked = acked + tonumber(n) end
  end
end
"""


def _wrk_load(
    wrk: str, url: str, key: str, ids_dir: Path, mode: str, cfg: BenchConfig
) -> dict[str, Any]:
    """Drive ``url`` with wrk for ``cfg.http_seconds``: ``mode`` ``pages`` (``GET /v1/feed`` for
    random users) or ``events`` (``POST /v1/events`` batches of ``cfg.http_batch`` new
    events); return throughput, errors and latency percentiles as wrk measured them."""
    fields = {
        "users": ids_dir / "users.txt",
        "items": ids_dir / "items.txt",
        "seed": cfg.seed,
        "key": key,
        "batch": cfg.http_batch,
        "run": uuid.uuid4().hex[:12],
    }
    body = _WRK_PAGES if mode == "pages" else _WRK_EVENTS
    script = ids_dir / f"{mode}.lua"
    script.write_text((_WRK_COMMON + body) % fields)
    seconds = max(1, round(cfg.http_seconds))
    # wrk's default 2 s timeout drops slow requests from the latency histogram; 30 s keeps them
    cmd = [wrk, "-t1", f"-c{cfg.http_concurrency}", f"-d{seconds}s", "--timeout", "30s"]
    cmd += ["-s", str(script), url]
    try:
        done = subprocess.run(  # noqa: S603 (wrk from PATH, arguments built here)
            cmd, capture_output=True, text=True, timeout=seconds + 90
        )
    finally:
        script.unlink(missing_ok=True)
    found = re.search(r"^STEERFEED_WRK (\{.*\})$", done.stdout, flags=re.M)
    if done.returncode != 0 or found is None:
        msg = f"wrk failed (exit {done.returncode}): {(done.stderr or done.stdout)[-2000:]}"
        raise BenchError(msg)
    raw = json.loads(found.group(1))
    secs = raw["duration_us"] / 1e6
    n = int(raw["requests"])
    errors = sum(int(raw[k]) for k in ("connect", "read", "write", "status", "timeout"))
    out: dict[str, Any] = {
        "client": f"wrk -t1 -c{cfg.http_concurrency}",
        "mode": mode,
        "seconds": round(secs, 2),
        "concurrency": cfg.http_concurrency,
        "requests": n,
        "errors": errors,
        "error_counts": {k: int(raw[k]) for k in ("connect", "read", "write", "status", "timeout")},
        "requests_per_s": round(n / secs, 1) if secs > 0 else 0.0,
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "mean_ms": round(raw["mean_us"] / 1000, 2),
    }
    if mode == "events":
        out["batch"] = cfg.http_batch
        out["events_acked"] = int(raw["acked"])
        out["events_per_s"] = round(raw["acked"] / secs, 1) if secs > 0 else 0.0
    return out


def redact_url(url: str) -> str:
    """``url`` without its password (reports and logs carry no secret)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def config_for_report(cfg: BenchConfig) -> dict[str, Any]:
    """The configuration as the report shows it (the store URL without its password)."""
    out = cfg.model_dump()
    if cfg.db_url:
        out["db_url"] = redact_url(cfg.db_url)
    return out


def world_exists(data_dir: Path) -> bool:
    """Whether the store of ``data_dir`` (``STEERFEED_DB_URL``, else its DuckDB file) holds a
    world to measure."""
    url = StorageSettings(data_dir=Path(data_dir)).resolved_db_url()
    if not is_postgres_url(url):
        return Path(duckdb_path(url)).exists()
    store = open_store(url)
    try:
        return bool(store.count("users"))
    finally:
        store.close()


def run_bench(cfg: BenchConfig, data_dir: Path, *, progress: bool = False) -> dict[str, Any]:
    """Build the world in ``data_dir`` and measure; return the report (JSON-able)."""
    t_all = time.perf_counter()
    report: dict[str, Any] = {"config": config_for_report(cfg), "machine": machine()}
    if cfg.reuse and world_exists(data_dir):
        report["build"] = {"reused": str(data_dir)}
    else:
        report["build"] = build_demo(
            data_dir,
            n_users=cfg.users,
            n_clips=cfg.clips,
            n_events=cfg.events,
            seed=cfg.seed,
            progress=progress,
        )
    users, items, service_key, mood_keys = _in_process(cfg, data_dir, report)
    # The in-process engine is gone: at scale its state is gigabytes the server needs too.
    gc.collect()
    if cfg.http:
        wrk = shutil.which("wrk")
        if wrk is None:
            # The page and event loads need wrk; mood prompts are timed without it.
            logger.warning(WRK_MISSING)
            report["http_skipped"] = WRK_MISSING
        if wrk is not None or cfg.mood_prompts:
            report.update(_http(cfg, data_dir, users, items, service_key, mood_keys, wrk))
    report["peak_rss_mb"] = {
        "bench_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "children_max": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }
    report["total_s"] = round(time.perf_counter() - t_all, 1)
    return report


@dataclass
class TimedPages:
    """Page latencies from :func:`time_pages`: a user's later pages (``steady_ms``) and first
    pages in the process (``first_ms``), candidates per steady page, ms per pipeline stage."""

    steady_ms: list[float] = field(default_factory=list)
    first_ms: list[float] = field(default_factory=list)
    candidates: list[int] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)


def page_pool(users: np.ndarray, pages: int, rng: np.random.Generator) -> np.ndarray:
    """The users who page in a timing run: a pool a quarter the size of the pages, so each asks
    for several pages (users page in sessions)."""
    return rng.choice(users, size=max(1, min(len(users), pages // 4)), replace=False)


def time_pages(
    engine: Any, pool: np.ndarray, pages: int, rng: np.random.Generator, *, warm_up: int = 10
) -> TimedPages:
    """Time ``pages`` pages of :meth:`Engine.feed` for users drawn from ``pool``, after
    ``warm_up`` untimed ones (they warm caches and load models)."""
    # A user's first page in this process computes what is cached per user after (their taste
    # vector), so first pages are kept apart from the steady state.
    out = TimedPages()
    seen: set[int] = set()
    for i in range(pages + warm_up):
        uid = int(pool[rng.integers(0, len(pool))])
        t1 = time.perf_counter()
        page = engine.feed(uid, limit=20)
        ms = (time.perf_counter() - t1) * 1000
        if i < warm_up:
            seen.add(uid)
            continue
        if uid not in seen:
            seen.add(uid)
            out.first_ms.append(ms)
            continue
        out.steady_ms.append(ms)
        out.candidates.append(page.diagnostics.n_candidates)
        for stage, sms in page.diagnostics.timings_ms.items():
            out.stages.setdefault(str(stage), []).append(float(sms))
    return out


def _in_process(
    cfg: BenchConfig, data_dir: Path, report: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, str, dict[int, str]]:
    """Open the engine in this process, time pages and bulk ingestion into ``report``; return
    the users, clips and API keys the HTTP part needs (the engine is closed)."""
    t0 = time.perf_counter()
    engine = open_engine(data_dir)
    report["state_load_s"] = round(time.perf_counter() - t0, 2)
    rng = np.random.default_rng(cfg.seed)
    users = np.asarray(sorted(engine.state.profiles.users), dtype=np.int64)
    items = engine.state.catalogue.item_ids.copy()
    try:
        if cfg.train:
            report["train"] = _train(engine)
        health = engine.health()
        report["scorer"] = health.get("learned_ranker", {"serving": "hand_weighted"})
        pool = page_pool(users, cfg.pages, rng)
        timed = time_pages(engine, pool, cfg.pages, rng)
        report["in_process"] = {
            **_pct(timed.steady_ms),
            "candidates_mean": round(float(np.mean(timed.candidates)), 1)
            if timed.candidates
            else 0.0,
            # where the time goes: mean ms per pipeline stage (the profile of a page)
            "stage_mean_ms": {k: round(float(np.mean(v)), 2) for k, v in timed.stages.items()},
        }
        report["in_process_first_page"] = _pct(timed.first_ms) if timed.first_ms else {}
        if cfg.telemetry_pages:
            # What metrics and tracing add to a page, against the same engine with them off.
            report["telemetry"] = telemetry_overhead(
                engine, pool, pages=cfg.telemetry_pages, rng=rng
            )
        if cfg.bulk_events:
            df = _synthetic_events(users, items, cfg.bulk_events, rng, start=_now())
            t1 = time.perf_counter()
            n = engine.ingest_events(df)
            secs = time.perf_counter() - t1
            report["ingest_bulk"] = {
                "events": n,
                "seconds": round(secs, 2),
                "events_per_s": round(n / secs, 1),
            }
        if cfg.mood_prompts:
            report["mood_in_process"] = _moods_in_process(engine, users, cfg)
        service_key = engine.store.create_api_key("service")
        # one user per prompt while there are users enough (as in life; also keeps each user
        # under the active-mood cap); more prompts than users go round them again
        mood_keys = {
            int(u): engine.store.create_api_key("user", user_id=int(u))
            for u in users[: cfg.mood_prompts + 2]
        }
    finally:
        engine.close()
    return users, items, service_key, mood_keys


def _moods_in_process(engine: Any, users: np.ndarray, cfg: BenchConfig) -> dict[str, Any]:
    """Time :meth:`MoodService.create` and parsing alone over distinct prompts, each followed by
    a page for its user (the page waits for the prompt's expansion; the prompt does not), with
    the steering structures warmed first as the server warms them at start; the moods are
    deleted afterwards so the server starts without them."""
    from steering.prompt_parser import parse_mood

    steering = engine.steering
    t0 = time.perf_counter()
    steering.concepts.warm()
    warm_s = time.perf_counter() - t0
    prompts = mood_prompts(cfg.mood_prompts + 2, seed=cfg.seed)
    vocab = steering.concepts.vocabulary()
    parse: list[float] = []
    create: list[float] = []
    page: list[float] = []
    touched: set[int] = set()
    for i, text in enumerate(prompts):
        uid = int(users[i % len(users)])
        touched.add(uid)
        t1 = time.perf_counter()
        parse_mood(text, vocabulary=vocab)
        t2 = time.perf_counter()
        steering.moods.create(uid, text)
        t3 = time.perf_counter()
        engine.feed(uid, limit=20)
        t4 = time.perf_counter()
        if i >= 2:  # as over HTTP: the first prompts are left out
            parse.append((t2 - t1) * 1000)
            create.append((t3 - t2) * 1000)
            page.append((t4 - t3) * 1000)
    for uid in touched:
        steering.moods.clear(uid)
    return {
        "warm_s": round(warm_s, 2),  # catalogue, vocabulary, embedding model
        "create": _pct(create),
        "parse": _pct(parse),
        "next_page": _pct(page),
    }


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _train(engine: Any) -> dict[str, Any]:
    from pipelines.serving.jobs import JobContext, run_job

    t0 = time.perf_counter()
    rep = run_job("train", JobContext(engine))
    out: dict[str, Any] = {"ok": rep.ok, "seconds": round(time.perf_counter() - t0, 1)}
    if rep.ok:
        out.update({k: rep.counts.get(k) for k in ("version", "promoted", "serving", "n_train")})
    else:
        out["message"] = rep.message
    return out


def _http(
    cfg: BenchConfig,
    data_dir: Path,
    users: np.ndarray,
    items: np.ndarray,
    service_key: str,
    mood_keys: dict[int, str],
    wrk: str | None,
) -> dict[str, Any]:
    import httpx

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ids_dir = Path(tmp)
        (ids_dir / "users.txt").write_text("\n".join(str(int(u)) for u in users) + "\n")
        (ids_dir / "items.txt").write_text("\n".join(str(int(i)) for i in items) + "\n")
        t0 = time.perf_counter()
        proc, url = start_server(data_dir, log_path=Path(tmp) / "server.log")
        out["server_start_s"] = round(time.perf_counter() - t0, 1)
        try:
            # Measure the steady state: the steering concept catalogue builds in the background
            # after start-up (a readiness probe would hold traffic back the same way).
            out["warm_up_s"] = round(_wait_warm(url), 1)
            if wrk is not None:
                out["http_pages"] = _wrk_load(wrk, url, service_key, ids_dir, "pages", cfg)
                out["http_events"] = _wrk_load(wrk, url, service_key, ids_dir, "events", cfg)
            if cfg.mood_prompts:
                out["mood_prompt"] = _moods(
                    url, mood_keys, httpx, n=cfg.mood_prompts, seed=cfg.seed
                )
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log = (Path(tmp) / "server.log").read_text(errors="replace")
            out["server_errors_logged"] = log.count("Traceback")
    return out


def _server_ms(headers: Any) -> float | None:
    """The server's own time from a ``Server-Timing: app;dur=<ms>`` header."""
    found = re.search(r"\bapp;dur=([0-9.]+)", headers.get("server-timing", ""))
    return float(found.group(1)) if found else None


def _moods(url: str, keys: dict[int, str], httpx: Any, *, n: int, seed: int = 0) -> dict[str, Any]:
    """Time ``n`` distinct prompts (and two warm-up ones) over HTTP, each with the next page."""
    # Other prompts than the in-process run's: each is new to this server too.
    prompts = mood_prompts(n + 2, seed=seed, offset=n + 2)
    users = list(keys.items())
    lat: list[float] = []
    server: list[float] = []
    page_lat: list[float] = []
    codes: dict[str, int] = {}
    if "/v1/users/{user_id}/mood" not in httpx.get(url + "/openapi.json").json()["paths"]:
        return {"wired": False}
    first_s: float | None = None
    with httpx.Client(base_url=url, timeout=120.0) as c:
        for i, text in enumerate(prompts):
            uid, key = users[i % len(users)]
            t0 = time.perf_counter()
            server_ms: float | None = None
            try:
                r = c.post(
                    f"/v1/users/{uid}/mood",
                    json={"text": text},
                    headers={"Authorization": f"Bearer {key}"},
                )
                code = str(r.status_code)
                server_ms = _server_ms(r.headers)
            except httpx.TimeoutException:
                # reported, not raised: the rest of the bench report must survive
                code = "client_timeout_120s"
            ms = (time.perf_counter() - t0) * 1000
            if i == 0:
                first_s = round(ms / 1000, 1)
            if i >= 2:  # the first prompts load the embedder and the concept index
                lat.append(ms)
                if server_ms is not None:
                    server.append(server_ms)
            codes[code] = codes.get(code, 0) + 1
            if code == "client_timeout_120s":
                break
            # The page right after the prompt: it follows the mood, so it waits for a phrase
            # never seen before to be expanded (the prompt itself is answered before that).
            t0 = time.perf_counter()
            try:
                c.get(
                    "/v1/feed",
                    params={"user_id": uid, "limit": 20},
                    headers={"Authorization": f"Bearer {key}"},
                )
            except httpx.TimeoutException:
                break
            if i >= 2:
                page_lat.append((time.perf_counter() - t0) * 1000)
    return {
        "wired": True,
        "first_prompt_s": first_s,  # includes building the concept catalogue once
        **(_pct(lat) if lat else {}),
        # from the Server-Timing header: the same requests without the client and loopback
        "server": _pct(server) if server else None,
        "next_page": _pct(page_lat) if page_lat else None,
        "status_counts": codes,
    }


# -- beyond one machine: what a single DuckDB file holds -----------------------------------------
def store_scale(
    event_counts: list[int],
    *,
    work_dir: Path | None = None,
    n_users: int = 100_000,
    n_clips: int = 100_000,
    chunk: int = 1_000_000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Grow one DuckDB file to each event count and measure insert rate, file size, an
    analyst query and the serving-state load (what a server restart costs)."""
    from ranking.state import FeedState
    from storage.store import Store

    rng = np.random.default_rng(seed)
    own = work_dir is None
    root = Path(tempfile.mkdtemp(prefix="sf-scale-")) if own else Path(work_dir)  # type: ignore[arg-type]
    results: list[dict[str, Any]] = []
    try:
        path = root / "scale.duckdb"
        store = Store(path)
        users = np.arange(1, n_users + 1, dtype=np.int64)
        items = np.arange(1, n_clips + 1, dtype=np.int64)
        store.add_users(pl.DataFrame({"user_id": users}))
        store.add_clips(
            pl.DataFrame(
                {
                    "item_id": items,
                    "author_id": users[rng.integers(0, n_users, n_clips)],
                    "caption": [f"clip {i}" for i in items],
                }
            )
        )
        have = 0
        start = _now() - timedelta(days=30)
        for target in sorted(event_counts):
            t0 = time.perf_counter()
            while have < target:
                k = min(chunk, target - have)
                store.append_events(_synthetic_events(users, items, k, rng, start=start))
                have += k
            insert_s = time.perf_counter() - t0
            store.checkpoint()
            t1 = time.perf_counter()
            store.query("SELECT event_type, count(*) FROM events GROUP BY ALL")
            query_s = time.perf_counter() - t1
            t2 = time.perf_counter()
            state = FeedState.load(store)
            load_s = time.perf_counter() - t2
            del state
            results.append(
                {
                    "events": have,
                    "insert_events_per_s": round(
                        (target - (results[-1]["events"] if results else 0)) / max(insert_s, 1e-9),
                        1,
                    ),
                    "file_mb": round(path.stat().st_size / 1024**2, 1),
                    "group_by_query_s": round(query_s, 3),
                    "state_load_s": round(load_s, 1),
                    "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                }
            )
            logger.info("store scale: %s", results[-1])
        store.close()
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)
    return results
