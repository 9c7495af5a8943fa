"""HTTP load generator for ``steerfeed bench``; runs in its own process so the load does not
share the server's interpreter (``python -m pipelines.offline.bench_load --help``).

Two modes, both printing one JSON object on stdout:

- ``pages``: ``--concurrency`` asyncio workers fetch ``GET /v1/feed`` for random users for
  ``--seconds``; reports requests, errors by status, pages/s and latency percentiles.
- ``events``: workers post ``POST /v1/events`` batches of ``--batch`` events with fresh ids;
  reports acknowledged events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np


def _percentiles(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan")}
    a = np.asarray(ms)
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "mean_ms": round(float(a.mean()), 2),
    }


async def _pages(
    client: httpx.AsyncClient,
    users: list[int],
    deadline: float,
    rng: random.Random,
    lat: list[float],
    codes: Counter[int],
) -> None:
    while time.perf_counter() < deadline:
        uid = rng.choice(users)
        t0 = time.perf_counter()
        try:
            r = await client.get("/v1/feed", params={"user_id": uid, "limit": 20})
            codes[r.status_code] += 1
        except httpx.HTTPError:
            codes[-1] += 1
            continue
        lat.append((time.perf_counter() - t0) * 1000)


async def _events(
    client: httpx.AsyncClient,
    users: list[int],
    items: list[int],
    batch: int,
    deadline: float,
    rng: random.Random,
    lat: list[float],
    codes: Counter[int],
    acked: list[int],
) -> None:
    while time.perf_counter() < deadline:
        body = {
            "events": [
                {
                    "event_id": uuid.uuid4().hex,
                    "user_id": rng.choice(users),
                    "item_id": rng.choice(items),
                    "event_type": rng.choice(("impression", "view", "like", "skip")),
                    "watch_frac": round(rng.random(), 3),
                }
                for _ in range(batch)
            ]
        }
        t0 = time.perf_counter()
        try:
            r = await client.post("/v1/events", json=body)
            codes[r.status_code] += 1
            if r.status_code == 200:
                acked.append(int(r.json()["accepted"]))
        except httpx.HTTPError:
            codes[-1] += 1
            continue
        lat.append((time.perf_counter() - t0) * 1000)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Drive the server and summarise."""
    world = json.loads(Path(args.world).read_text())
    users, items = world["users"], world["items"]
    rng = random.Random(args.seed)
    lat: list[float] = []
    codes: Counter[int] = Counter()
    acked: list[int] = []
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    headers = {"Authorization": f"Bearer {args.key}"}
    async with httpx.AsyncClient(
        base_url=args.url, headers=headers, limits=limits, timeout=30.0
    ) as client:
        t0 = time.perf_counter()
        deadline = t0 + args.seconds
        if args.mode == "pages":
            jobs = [
                _pages(client, users, deadline, random.Random(rng.random()), lat, codes)
                for _ in range(args.concurrency)
            ]
        else:
            jobs = [
                _events(
                    client,
                    users,
                    items,
                    args.batch,
                    deadline,
                    random.Random(rng.random()),
                    lat,
                    codes,
                    acked,
                )
                for _ in range(args.concurrency)
            ]
        await asyncio.gather(*jobs)
        secs = time.perf_counter() - t0
    n = sum(codes.values())
    errors = sum(v for k, v in codes.items() if k != 200)
    out: dict[str, Any] = {
        "mode": args.mode,
        "seconds": round(secs, 2),
        "concurrency": args.concurrency,
        "requests": n,
        "errors": errors,
        "status_counts": {str(k): v for k, v in sorted(codes.items())},
        "requests_per_s": round(n / secs, 1),
        **_percentiles(lat),
    }
    if args.mode == "events":
        out["events_acked"] = sum(acked)
        out["events_per_s"] = round(sum(acked) / secs, 1)
    return out


def main() -> None:
    """Parse arguments, run, print JSON."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--world", required=True, help="JSON file with 'users' and 'items' lists")
    p.add_argument("--mode", choices=("pages", "events"), default="pages")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    sys.stdout.write(json.dumps(asyncio.run(run(args))) + "\n")


if __name__ == "__main__":
    main()
