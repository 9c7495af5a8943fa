"""Smoke test of ``steerfeed bench`` on the tiny world (a fast, untimed run of every stage)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipelines.offline.bench import WRK_MISSING, BenchConfig, run_bench, store_scale


def test_bench_in_process_stages(world_dir: Path) -> None:
    cfg = BenchConfig(
        pages=10, train=False, bulk_events=2000, http=False, reuse=True, telemetry_pages=5
    )
    report = run_bench(cfg, world_dir)
    inp = report["in_process"]
    assert inp["n"] == 10 and 0 < inp["p50_ms"] <= inp["p99_ms"]
    assert inp["stage_mean_ms"], "per-stage timings are reported"
    assert report["ingest_bulk"]["events"] == 2000
    assert "http_pages" not in report
    tel = report["telemetry"]
    assert tel["pages_per_config"] == 5
    assert tel["off"]["hook_cpu_mean_ms"] < tel["metrics_tracing"]["hook_cpu_mean_ms"]
    assert tel["metrics"]["hook_wall_mean_ms"] > 0
    assert tel["metrics_flush_cpu_per_page_ms"] > 0  # the logged metrics were replayed
    # a page span, its stage spans and nothing else: at least one span per stage a page ran
    assert tel["spans_exported"] >= 5 * 7 and tel["otlp_bytes_per_span"] > 0


def test_bench_without_wrk_skips_the_http_part_and_says_why(
    world_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no wrk on it
    # Mood prompts are timed without wrk (they need only the server); none asked for here.
    cfg = BenchConfig(
        pages=10,
        train=False,
        bulk_events=0,
        http=True,
        mood_prompts=0,
        reuse=True,
        telemetry_pages=0,
    )
    report = run_bench(cfg, world_dir)
    assert report["http_skipped"] == WRK_MISSING and "apt-get install wrk" in WRK_MISSING
    assert not {"http_pages", "http_events", "server_start_s", "mood_prompt"} & set(report)


@pytest.mark.bench
@pytest.mark.skipif(shutil.which("wrk") is None, reason="the HTTP load comes from wrk")
def test_bench_measures_every_stage_without_errors(world_dir: Path) -> None:
    """Every stage including uvicorn under load from wrk in a second process (~20-60 s)."""
    cfg = BenchConfig(
        pages=10,
        train=False,
        bulk_events=2000,
        http_seconds=1.5,
        http_concurrency=2,
        http_batch=50,
        mood_prompts=0,
        telemetry_pages=0,
        reuse=True,
    )
    report = run_bench(cfg, world_dir)
    assert report["build"] == {"reused": str(world_dir)}
    inp = report["in_process"]
    assert inp["n"] == 10 and 0 < inp["p50_ms"] <= inp["p99_ms"]
    assert inp["stage_mean_ms"], "per-stage timings are reported"
    assert report["ingest_bulk"]["events"] == 2000
    for mode in ("http_pages", "http_events"):
        assert report[mode]["requests"] > 0, mode
        assert report[mode]["errors"] == 0, report[mode]
    pages, events = report["http_pages"], report["http_events"]
    assert 0 < pages["p50_ms"] <= pages["p99_ms"] and pages["requests_per_s"] > 0
    assert 0 < events["p50_ms"] <= events["p99_ms"]
    # every event id is new: each acknowledged batch was committed in full
    assert events["events_acked"] == events["requests"] * 50
    assert report["server_errors_logged"] == 0
    assert report["warm_up_s"] >= 0  # load starts once the concept catalogue is built
    assert report["peak_rss_mb"]["bench_process"] > 0


def test_store_scale_grows_one_file_and_reloads_state(tmp_path: Path) -> None:
    rows = store_scale([1000, 3000], work_dir=tmp_path, n_users=50, n_clips=40, chunk=1000)
    assert [r["events"] for r in rows] == [1000, 3000]
    assert rows[1]["file_mb"] >= rows[0]["file_mb"] > 0
    assert all(r["insert_events_per_s"] > 0 and r["state_load_s"] >= 0 for r in rows)
