"""Runs of one job on one engine take turns (a run asked for over HTTP while the scheduler's
runs waits for it); different jobs still run side by side."""

from __future__ import annotations

import threading
from typing import Any

from pipelines.serving.jobs import JobContext, JobSpec
from pipelines.serving.jobs.runner import run_spec


def test_a_second_run_of_a_job_waits_while_another_job_runs_beside(engine: Any) -> None:
    inside = {"a": 0}
    most = {"a": 0}
    a_entered, release = threading.Event(), threading.Event()
    guard = threading.Lock()

    def job_a(_: Any) -> dict[str, Any]:
        with guard:
            inside["a"] += 1
            most["a"] = max(most["a"], inside["a"])
        a_entered.set()
        release.wait(timeout=60)
        with guard:
            inside["a"] -= 1
        return {}

    def job_b(_: Any) -> dict[str, Any]:
        # Runs while the first "a" is inside: other jobs are not held up.
        ran_beside_a = inside["a"] == 1
        release.set()
        return {"beside": ran_beside_a}

    ctx = JobContext(engine)
    a, b = JobSpec("a", job_a, None, "waits"), JobSpec("b", job_b, None, "releases")
    first = threading.Thread(target=run_spec, args=(a, ctx))
    second = threading.Thread(target=run_spec, args=(a, ctx))
    first.start()
    try:
        assert a_entered.wait(timeout=60)
        second.start()
        second.join(timeout=0.5)  # long enough to enter, were it not held back
        assert second.is_alive() and most["a"] == 1
        report = run_spec(b, ctx)
        assert report.ok and report.counts == {"beside": True}
    finally:
        release.set()  # never leave a run waiting on a failed test
        first.join(timeout=60)
        if second.is_alive() or second.ident is not None:
            second.join(timeout=60)
    assert most["a"] == 1
