"""Log lines as JSON with the request id; routine job runs at DEBUG."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from pipelines.serving.jobs import JobContext, run_job
from pipelines.serving.telemetry import bind_request_id, reset_request_id
from pipelines.serving.telemetry.logs import JsonFormatter, RequestIdFilter, configure_logging
from tests.conftest import make_key


@pytest.fixture()
def json_lines() -> Iterator[io.StringIO]:
    """Every record at DEBUG and up, formatted as the JSON handler formats it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def _records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_configure_logging_writes_json_lines_with_the_request_id() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    try:
        assert configure_logging(fmt="json", stream=stream) is None  # pytest's handlers stay
        configure_logging(level=logging.INFO, fmt="json", stream=stream, force=True)
        log = logging.getLogger("ranking.pipeline")
        log.info("outside a request")
        token = bind_request_id("req-42")
        try:
            log.warning("source %s timed out", "trending")
            try:
                raise ValueError("boom")
            except ValueError:
                log.exception("it failed")
        finally:
            reset_request_id(token)
        logging.getLogger("apscheduler.executors.default").info("Running job ... (every 15 s)")
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [x["message"] for x in lines] == [
        "outside a request",
        "source trending timed out",
        "it failed",
    ]
    assert [x["request_id"] for x in lines] == ["-", "req-42", "req-42"]
    assert lines[1]["level"] == "WARNING" and lines[1]["logger"] == "ranking.pipeline"
    assert "ValueError: boom" in lines[2]["exception"]


def test_a_requests_log_lines_carry_its_id(client: Any, json_lines: io.StringIO) -> None:
    engine = client.app.state.engine
    uid = max(engine.state.profiles.users)
    r = client.get(
        "/v1/feed",
        params={"user_id": uid},
        headers={**make_key(client, "service"), "X-Request-ID": "trace-me-7"},
    )
    assert r.status_code == 200
    mine = [x for x in _records(json_lines) if x["request_id"] == "trace-me-7"]
    # The pipeline's line is written in the route's worker thread: the id followed it there.
    assert any(
        x["logger"] == "ranking.pipeline" and "request=trace-me-7" in x["message"] for x in mine
    )
    assert all(x["thread"] != "MainThread" for x in mine if x["logger"] == "ranking.pipeline")


def test_a_routine_job_run_logs_at_debug_and_a_failure_at_error(
    engine: Any, json_lines: io.StringIO
) -> None:
    from pipelines.serving.jobs.runner import JobSpec

    assert run_job("author_stats", JobContext(engine)).ok
    ok = [x for x in _records(json_lines) if "job=author_stats ok" in x["message"]]
    assert [x["level"] for x in ok] == ["DEBUG"]
    assert ok[0]["request_id"].startswith("job-author_stats-")

    def broken(_: JobContext) -> dict[str, Any]:
        raise RuntimeError("store unreachable")

    table = {"broken": JobSpec("broken", broken, None, "fails")}
    assert not run_job("broken", JobContext(engine), table=table).ok
    failed = [x for x in _records(json_lines) if x["message"] == "job broken failed"]
    assert [x["level"] for x in failed] == ["ERROR"]
    assert failed[0]["request_id"].startswith("job-broken-")
    assert "RuntimeError: store unreachable" in failed[0]["exception"]
