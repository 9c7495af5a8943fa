"""``steerfeed bench``: build a world and measure latency, throughput, ingestion and memory."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from api.cli.core import _fail, app


@app.command()
def bench(
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="where to build the bench world (default: a temp dir)"),
    ] = None,
    users: Annotated[int, typer.Option(help="users in the world")] = 2000,
    clips: Annotated[int, typer.Option(help="clips in the world")] = 20_000,
    events: Annotated[int, typer.Option(help="logged events in the world")] = 200_000,
    pages: Annotated[int, typer.Option(help="in-process pages to time")] = 500,
    train: Annotated[bool, typer.Option(help="train the learned ranker first")] = True,
    bulk_events: Annotated[int, typer.Option(help="events for the bulk ingestion run")] = 200_000,
    http: Annotated[bool, typer.Option(help="measure uvicorn over loopback")] = True,
    http_seconds: Annotated[float, typer.Option(help="seconds of each HTTP load")] = 15.0,
    concurrency: Annotated[int, typer.Option(help="concurrent HTTP connections")] = 16,
    batch: Annotated[int, typer.Option(help="events per HTTP batch")] = 500,
    mood_prompts: Annotated[int, typer.Option(help="mood prompts to time")] = 20,
    telemetry_pages: Annotated[
        int, typer.Option(help="rounds of the metrics/tracing overhead measurement (0: skip)")
    ] = 200,
    store_events: Annotated[
        str,
        typer.Option(
            help="comma-separated event counts for the single-DuckDB-file scale run "
            "(e.g. 1000000,5000000); empty = skip"
        ),
    ] = "",
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    seed: Annotated[int, typer.Option(help="world seed")] = 0,
    reuse: Annotated[
        bool, typer.Option(help="measure the world already in --data-dir instead of building")
    ] = False,
    db_url: Annotated[
        str | None,
        typer.Option(
            "--db-url",
            help="build and measure the world in PostgreSQL: an empty database "
            "(postgresql://user@host:5432/db), or a server alone (postgresql://user@host:5432) "
            "for a database steerfeed_bench_<random> created and dropped by the run",
        ),
    ] = None,
    workers: Annotated[
        str,
        typer.Option(
            "--workers",
            help="comma-separated worker counts, e.g. 1,2: 'steerfeed serve --workers N' for each "
            "under the same wrk load (more than 1 needs --db-url); empty = skip",
        ),
    ] = "",
) -> None:
    """Build a world of the given size and measure the engine; see pipelines/offline/bench.py."""
    from pipelines.offline.bench import BenchConfig, run_bench, store_scale
    from pipelines.offline.bench_workers import parse_workers, run_workers_bench

    try:
        cfg = BenchConfig(
            users=users,
            clips=clips,
            events=events,
            seed=seed,
            pages=pages,
            train=train,
            bulk_events=bulk_events,
            http=http,
            http_seconds=http_seconds,
            http_concurrency=concurrency,
            http_batch=batch,
            mood_prompts=mood_prompts,
            telemetry_pages=telemetry_pages,
            reuse=reuse,
            db_url=db_url,
            workers=parse_workers(workers),
        )
        counts = [int(x) for x in store_events.split(",") if x.strip()]
    except (ValidationError, ValueError) as exc:
        _fail(f"invalid bench options: {exc}")
        return
    if any(c <= 0 for c in counts):
        _fail("--store-events takes positive counts, e.g. 1000000,5000000")
    # --db-url or --workers: the world on that store and the several-workers part
    # (pipelines/offline/bench_workers.py); otherwise the bench as before.
    measure = run_workers_bench if (cfg.db_url or cfg.workers) else run_bench
    if data_dir is None:
        with tempfile.TemporaryDirectory(prefix="sf-bench-") as tmp:
            report = measure(cfg, Path(tmp) / "world", progress=not as_json)
    else:
        report = measure(cfg, data_dir, progress=not as_json)
    if counts:
        report["store_scale"] = store_scale(counts)
    if as_json:
        typer.echo(json.dumps(report))
    else:
        typer.echo(json.dumps(report, indent=2))
