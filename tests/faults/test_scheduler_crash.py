"""A scheduled job that crashes is logged and retried, and the server keeps serving."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipelines.serving import scheduler as scheduler_mod
from pipelines.serving.jobs import JobContext, JobSpec
from tests.conftest import make_key

PROBE = "fault_probe"


@pytest.fixture()
def crashing_job(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A job that raises on its first two runs, then succeeds; retries after 0.2 s."""
    calls: dict[str, Any] = {"n": 0, "ok": threading.Event()}

    def probe(ctx: JobContext) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] <= 2:
            msg = f"simulated crash #{calls['n']}"
            raise RuntimeError(msg)
        calls["ok"].set()
        return {"runs": calls["n"]}

    calls["spec"] = JobSpec(PROBE, probe, 3600, "fails twice, then works")
    monkeypatch.setattr(scheduler_mod, "RETRY_DELAYS_S", (0.2, 0.2, 0.2))
    return calls


def test_crashing_job_is_logged_retried_and_serving_goes_on(
    world_dir: Path, crashing_job: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    from fastapi.testclient import TestClient

    from api.http.main import create_app
    from api.http.settings import ApiSettings
    from pipelines.serving.engine import open_engine

    caplog.set_level(logging.INFO)
    app = create_app(
        engine_factory=lambda: open_engine(world_dir), api_settings=ApiSettings(scheduler=False)
    )
    with TestClient(app) as client:
        engine = app.state.engine
        sched = scheduler_mod.start_scheduler(engine, table={PROBE: crashing_job["spec"]})
        try:
            sched.modify_job(PROBE, next_run_time=datetime.now(UTC))  # run now, not in an hour
            uid = min(engine.state.profiles.users)
            headers = make_key(client, "user", uid)
            served = 0
            deadline = time.monotonic() + 30
            while not crashing_job["ok"].is_set() and time.monotonic() < deadline:
                r = client.get("/v1/feed", params={"user_id": uid}, headers=headers)
                assert r.status_code == 200
                served += 1
            assert crashing_job["ok"].is_set(), "the job was not retried to success"
        finally:
            sched.shutdown(wait=False)
    assert crashing_job["n"] == 3
    assert served >= 1
    text = caplog.text
    assert "job fault_probe failed" in text and "simulated crash #1" in text
    assert "retry 1" in text and "retry 2" in text
    # The success after retries is logged at INFO (a routine run only at DEBUG).
    assert "job fault_probe ok after 2 retries" in text
