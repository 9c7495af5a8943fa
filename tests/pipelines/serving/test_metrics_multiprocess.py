"""Multiprocess mode: with PROMETHEUS_MULTIPROC_DIR set, /metrics merges what every worker
process recorded (real processes: the mode is chosen when the metrics module is imported)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[3]

WORKER = """
from pipelines.serving.telemetry.buffer import BUFFER
from pipelines.serving.telemetry.metrics import HTTP_IN_FLIGHT, PAGE_SECONDS, PAGES, STAGE_SECONDS
PAGES.labels("home", "ok").inc(3)
PAGE_SECONDS.labels("home").observe(0.02)
# Logged as the page path logs it; replayed into this worker's files when the process exits.
BUFFER.record([BUFFER.slot(STAGE_SECONDS.labels("home", "scorer").observe)], [0.003])
HTTP_IN_FLIGHT.inc()
"""
GONE = """
from pipelines.serving.telemetry.metrics import mark_worker_gone
mark_worker_gone()
"""
SCRAPE = """
from pipelines.serving.telemetry.metrics import render
print(render().decode())
"""


def _run(code: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_workers_metrics_are_merged(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    for _ in range(2):
        _run(WORKER, env)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(_run(SCRAPE, env))
        for s in fam.samples
    }
    assert samples[("steerfeed_pages_total", (("product", "home"), ("status", "ok")))] == 6
    assert samples[("steerfeed_page_seconds_count", (("product", "home"),))] == 2
    # What a worker's page path logged reached the shared files (replayed at exit).
    scorer = (("le", "0.005"), ("product", "home"), ("stage", "scorer"))
    assert samples[("steerfeed_stage_seconds_bucket", scorer)] == 2
    assert samples[("steerfeed_stage_seconds_bucket", (("le", "0.0025"), *scorer[1:]))] == 0
    # The in-flight gauge counts live workers only: both writers have exited without saying
    # so, so their values are still summed until they are marked gone.
    assert samples[("steerfeed_http_requests_in_flight", ())] == 2
    # A worker that shuts down marks itself gone: its counts stay, its live gauge goes.
    _run(WORKER + GONE, env)
    text = _run(SCRAPE, env)
    assert 'steerfeed_pages_total{product="home",status="ok"} 9.0' in text
    assert "steerfeed_http_requests_in_flight 2.0" in text
