"""``steerfeed bench --db-url --workers``: the several-workers part of the bench.

The run itself (a tiny world in a PostgreSQL database the bench creates and drops, served with
one and then two workers under wrk) is a benchmark (``-m bench``); the parsing and validation
around it run in the main suite.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from api.cli import app
from pipelines.offline.bench import BenchConfig, redact_url
from pipelines.offline.bench_workers import (
    FOLLOW_LAG_METRIC,
    follow_lag,
    histogram_quantile,
    names_database,
    parse_workers,
    run_workers_bench,
)
from tests.postgres_server import SERVER_URL, database_exists, postgres_unreachable


def test_worker_counts_parse_and_more_than_one_needs_postgres() -> None:
    assert parse_workers("1, 2") == [1, 2] and parse_workers("") == []
    with pytest.raises(ValueError, match="comma-separated"):
        parse_workers("1,two")
    with pytest.raises(ValidationError, match="needs a PostgreSQL store"):
        BenchConfig(workers=[1, 2])
    assert BenchConfig(workers=[1]).workers == [1]  # DuckDB serves with one
    with pytest.raises(ValidationError, match="distinct counts"):
        BenchConfig(workers=[2, 2], db_url="postgresql://u@h:5432/db")
    with pytest.raises(ValidationError, match="postgresql://"):
        BenchConfig(db_url="duckdb:///tmp/x.duckdb")


def test_the_cli_refuses_two_workers_on_duckdb_and_a_bad_list_in_one_line() -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["bench", "--workers", "1,2", "--json"])
    assert out.exit_code == 2 and "needs a PostgreSQL store" in out.output, out.output
    out = runner.invoke(app, ["bench", "--workers", "one", "--json"])
    assert out.exit_code == 2 and "comma-separated" in out.output, out.output
    out = runner.invoke(app, ["bench", "--db-url", "mysql://x/y", "--json"])
    assert out.exit_code == 2 and "postgresql://" in out.output, out.output
    assert "Traceback" not in out.output


def test_a_url_without_a_database_asks_for_a_scratch_one_and_passwords_stay_out() -> None:
    assert not names_database("postgresql://postgres@127.0.0.1:5432")
    assert not names_database("postgresql://postgres@127.0.0.1:5432/")
    assert names_database("postgresql://postgres@127.0.0.1:5432/steerfeed")
    assert redact_url("postgresql://me:s3cret@db:5432/x") == "postgresql://me:***@db:5432/x"
    assert redact_url("postgresql://me@db/x") == "postgresql://me@db/x"


def test_follow_lag_quantiles_come_from_the_histogram_buckets() -> None:
    # 100 observations: 50 at or under 0.1 s, 40 more by 0.5 s, 10 more by 2.5 s
    text = "\n".join(
        [
            "# TYPE steerfeed_follow_lag_seconds histogram",
            *(
                f'{FOLLOW_LAG_METRIC}_bucket{{kind="events",le="{le}"}} {c}'
                for le, c in [("0.1", 50.0), ("0.5", 90.0), ("2.5", 100.0), ("+Inf", 100.0)]
            ),
            f'{FOLLOW_LAG_METRIC}_count{{kind="events"}} 100.0',
            *(
                f'{FOLLOW_LAG_METRIC}_bucket{{kind="changes",le="{le}"}} 0.0'
                for le in ("0.1", "0.5", "2.5", "+Inf")
            ),
        ]
    )
    lag = follow_lag(text)
    assert lag["kinds"]["events"] == {"n": 100, "p50_s": 0.1, "p99_s": 2.3}
    assert lag["kinds"]["changes"] == {"n": 0, "p50_s": None, "p99_s": None}
    assert (lag["n"], lag["p50_s"], lag["p99_s"]) == (100, 0.1, 2.3)
    assert "reason" not in lag
    # a quantile past the last finite bound is that bound (Prometheus does the same)
    assert histogram_quantile(0.99, [(1.0, 10.0), (math.inf, 20.0)]) == 1.0
    absent = follow_lag("# nothing here\nsteerfeed_pages_total 3\n")
    assert absent["p50_s"] is None and absent["p99_s"] is None
    assert FOLLOW_LAG_METRIC in absent["reason"]
    assert follow_lag(None)["reason"].startswith("GET /metrics")


_PG_SKIP = postgres_unreachable()


@pytest.mark.bench
@pytest.mark.skipif(_PG_SKIP is not None, reason=str(_PG_SKIP))
@pytest.mark.skipif(shutil.which("wrk") is None, reason="the HTTP load comes from wrk")
def test_one_and_two_workers_over_postgres_serve_pages_without_errors(tmp_path: Path) -> None:
    """A tiny world in a database the bench makes, served with 1 and 2 workers (~1-2 min)."""
    cfg = BenchConfig(
        users=60,
        clips=300,
        events=3000,
        pages=20,
        train=False,
        bulk_events=0,
        http=False,  # the one-process HTTP part is test_bench_smoke's
        http_seconds=2,
        http_concurrency=4,
        http_batch=50,
        mood_prompts=0,
        telemetry_pages=0,
        db_url=SERVER_URL,
        workers=[1, 2],
    )
    report = run_workers_bench(cfg, tmp_path / "world")
    json.dumps(report)  # what --json prints
    part = report["workers"]
    assert part["counts"] == [1, 2]
    assert part["store"].startswith(SERVER_URL + "/steerfeed_bench_")
    assert not database_exists(part["store"].rsplit("/", 1)[1]), "the bench drops its database"
    assert report["config"]["db_url"] == SERVER_URL and report["config"]["workers"] == [1, 2]
    assert len(part["loadavg_before"]) == len(part["loadavg_after"]) == 3

    same = part["in_process_postgres_vs_duckdb"]
    assert same["same_world"], same["world"]
    assert same["postgres"]["n"] > 0 and same["duckdb"]["n"] > 0
    assert same["p50_ratio_postgres_to_duckdb"] > 0

    assert [r["workers"] for r in part["runs"]] == [1, 2]
    for run in part["runs"]:
        pages, events = run["pages"], run["events"]
        assert pages["requests"] > 0 and pages["errors"] == 0, pages
        assert 0 < pages["p50_ms"] <= pages["p99_ms"]
        assert events["errors"] == 0, events
        # every event id is new: each acknowledged batch was committed in full
        assert events["events_acked"] == events["requests"] * 50 > 0
        mem = run["memory"]
        assert mem["workers_found"] == run["workers"], mem
        assert all(e["rss_mb"] > 0 for e in mem["each"])
        assert mem["rss_mb_per_worker"] > 0
        lag = run["follow_lag"]
        assert "p50_s" in lag and "p99_s" in lag
        assert lag["p50_s"] is not None or lag["reason"]
    assert part["pages_per_s_ratio_vs_1"]["2"] > 0
