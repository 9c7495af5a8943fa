"""What one rate-limit check costs a request, per bucket backend, in one run.

``python -m pipelines.offline.bench_limits --calls 3000`` times ``RateLimiter.acquire`` (the
check every authenticated request makes) and ``FailedAuthThrottle.wait`` (the check every
request that presents a key makes first) against:

- ``memory``: this process's buckets (the single-process default);
- ``redis``: :class:`storage.buckets.RedisBuckets` (one Lua script call);
- ``postgres``: :class:`storage.buckets.PostgresBuckets` on a fresh database made by the
  store's migrations (one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``), created and
  dropped here;

and, as references measured in the same run, one bare round trip to each server (Redis
``PING``, PostgreSQL ``SELECT 1`` on a connection of the same kind of pool). Calls go in
blocks of 100, the backends in a rotating order, so the machine's load falls on all alike;
keys rotate over 200 buckets. A second pass runs ``--threads`` threads on one hot key (the
row or key every worker of one busy API key hits). A last reference is the hand-off of a
no-op to a worker thread and back from the event loop (``thread_hop``), what running the check
off the loop would add to every request. Prints JSON with the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import numpy as np
import psycopg
import redis

from api.http.ratelimit import FailedAuthThrottle, FailOpenBuckets, RateLimiter
from api.http.settings import ApiSettings
from storage.buckets import PostgresBuckets, RedisBuckets
from storage.factory import open_store

Call = Callable[[int], object]


def _stats(seconds: list[float]) -> dict[str, float]:
    us = np.asarray(seconds) * 1e6
    return {
        "p50_us": round(float(np.percentile(us, 50)), 1),
        "p99_us": round(float(np.percentile(us, 99)), 1),
        "mean_us": round(float(us.mean()), 1),
    }


def interleaved(calls: dict[str, Call], n: int, block: int = 100) -> dict[str, dict[str, float]]:
    """Time ``n`` calls of each, in blocks of ``block``, rotating which goes first."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for b in range(0, n, block):
        shift = (b // block) % len(names)
        for name in names[shift:] + names[:shift]:
            fn = calls[name]
            out = times[name]
            for i in range(b, min(b + block, n)):
                t0 = time.perf_counter()
                fn(i)
                out.append(time.perf_counter() - t0)
    return {name: _stats(t) for name, t in times.items()}


def hot_key(fn: Call, threads: int, n: int) -> dict[str, float]:
    """``threads`` threads each make ``n`` calls on one bucket at once."""
    times: list[list[float]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads)

    def run(k: int) -> None:
        start.wait()
        for _ in range(n):
            t0 = time.perf_counter()
            fn(0)
            times[k].append(time.perf_counter() - t0)

    workers = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    out = _stats([t for ts in times for t in ts])
    out["calls_per_s"] = round(threads * n / wall)
    return out


def thread_hop(n: int) -> dict[str, float]:
    """``n`` hand-offs of a no-op from the event loop to a worker thread and back (how
    Starlette's ``run_in_threadpool`` runs blocking work)."""

    async def run() -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            await anyio.to_thread.run_sync(lambda: None)
            out.append(time.perf_counter() - t0)
        return out

    return _stats(asyncio.run(run()))


def _acquire(limiter: RateLimiter, key: Callable[[int], str]) -> Call:
    return lambda i: limiter.acquire(key(i), "service")


def _auth_wait(throttle: FailedAuthThrottle, address: Callable[[int], str]) -> Call:
    return lambda i: throttle.wait(address(i))


def main(argv: list[str] | None = None) -> int:
    """Measure every backend and print the figures as JSON."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args(argv)
    # The service role's default rate: every call is granted, as on a healthy request path.
    settings = ApiSettings(rate_limit_per_s=2000.0, rate_limit_burst=200, rate_limit_roles={})
    keys = [f"bench{i}" for i in range(200)]
    addresses = [f"10.1.{i // 250}.{i % 250}" for i in range(200)]
    out: dict[str, Any] = {
        "load_before": os.getloadavg(),
        "cpus": os.cpu_count(),
        "calls": args.calls,
    }
    dbname = f"steerfeed_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {dbname}".encode())
    pg_url = args.postgres_url.rsplit("/", 1)[0] + "/" + dbname
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        open_store(pg_url).close()  # the migrations make rate_buckets
        redis_b = RedisBuckets(args.redis_url, namespace=namespace)
        pg_b = PostgresBuckets(pg_url, namespace=namespace)
        ping = redis.Redis.from_url(args.redis_url)
        select = psycopg.connect(pg_url, autocommit=True, prepare_threshold=0)
        limiters = {
            "memory": RateLimiter(settings),
            "redis": RateLimiter(settings, shared=FailOpenBuckets(redis_b)),
            "postgres": RateLimiter(settings, shared=FailOpenBuckets(pg_b)),
        }
        throttles = {
            "memory": FailedAuthThrottle(settings),
            "redis": FailedAuthThrottle(settings, shared=FailOpenBuckets(redis_b)),
            "postgres": FailedAuthThrottle(settings, shared=FailOpenBuckets(pg_b)),
        }
        for name, t in throttles.items():  # half the addresses have failed once
            for a in addresses[::2]:
                t.failed(a)
            limiters[name].acquire("warm", "service")
        calls: dict[str, Call] = {}
        for name, lim in limiters.items():
            calls[f"acquire_{name}"] = _acquire(lim, lambda i: keys[i % 200])
        for name, t in throttles.items():
            calls[f"auth_wait_{name}"] = _auth_wait(t, lambda i: addresses[i % 200])
        calls["ref_redis_ping"] = lambda i: ping.ping()
        calls["ref_postgres_select_1"] = lambda i: select.execute("SELECT 1").fetchone()
        out["sequential"] = interleaved(calls, args.calls)
        out["hot_key"] = {
            name: hot_key(_acquire(lim, lambda i: "hot"), args.threads, args.calls // args.threads)
            for name, lim in limiters.items()
        }
        out["threads"] = args.threads
        out["ref_thread_hop"] = thread_hop(args.calls)
        ping.close()
        select.close()
        redis_b.close()
        pg_b.close()
        leftover = redis.Redis.from_url(args.redis_url)
        for k in leftover.scan_iter(f"{namespace}:*"):
            leftover.delete(k)
        leftover.close()
    finally:
        with psycopg.connect(args.postgres_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)".encode())
    out["load_after"] = os.getloadavg()
    sys.stdout.write(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
