"""The CLI beside a running ``steerfeed serve`` on the embedded store: commands whose work has
a route go through the server (with the local credential), the others stop with one line
naming the server, never DuckDB's lock traceback; without a server they open the store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from api.cli import app
from storage.store import Store
from tests.conftest import copy_world, wait_until_live

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _cli(*args: str) -> _Result:
    """``steerfeed ARGS`` in this process (the real command; no interpreter start-up)."""
    res = CliRunner().invoke(app, list(args))
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return _Result(res.exit_code, res.stdout, res.stderr)


def _cli_process(*args: str) -> subprocess.CompletedProcess[str]:
    """``steerfeed ARGS`` as a user runs it: a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture()
def served_dir(tiny_world_dir: Path, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A copy of the tiny world served by a real ``steerfeed serve`` subprocess on a free
    port; yields (data folder, base URL). The server is stopped with SIGTERM at the end."""
    data = copy_world(tiny_world_dir, tmp_path / "world")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "server.log").open("wb")
    cmd = [sys.executable, "-m", "api.cli", "serve", "--data-dir", str(data)]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), "--no-scheduler"], env=ENV, stdout=log, stderr=log
    )
    try:
        wait_until_live(proc, url, tmp_path / "server.log")
        yield data, url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    # Stopping the server removes its files: the next command opens the store itself.
    assert not (data / "server.json").exists() and not (data / "server.token").exists()


def test_keys_and_jobs_work_through_a_running_server(served_dir: tuple[Path, str]) -> None:
    data, url = served_dir
    d = ["--data-dir", str(data)]

    made = _cli_process("keys", "create", "--role", "analyst", *d)
    assert made.returncode == 0, made.stderr
    key = made.stdout.split()[-1]
    analyst = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{url}/v1/models", headers=analyst).status_code == 200

    listed = _cli("keys", "list", "--json", *d)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    key_id = key.split("_")[1]
    assert {"key_id": key_id, "role": "analyst", "revoked": False}.items() <= next(
        r for r in rows if r["key_id"] == key_id
    ).items()
    assert key not in listed.stdout

    revoked = _cli("keys", "revoke", key_id, *d)
    assert revoked.returncode == 0 and f"revoked key {key_id}" in revoked.stdout
    assert httpx.get(f"{url}/v1/models", headers=analyst).status_code == 401  # at once

    bad = _cli("keys", "create", "--role", "user", *d)  # no --user-id: the server's 422
    assert bad.returncode == 2 and "acts for one user" in bad.stderr
    assert "Traceback" not in bad.stderr

    ran = _cli("jobs", "run", "wellbeing_refresh", *d)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["ok"] is True
    unknown = _cli("jobs", "run", "nope", *d)
    assert unknown.returncode == 2 and "unknown job 'nope'" in unknown.stderr

    out = data.parent / "report.html"
    report = _cli("report", "satisfaction", "--out", str(out), *d)
    assert report.returncode == 0, report.stderr
    assert "How people feel about their time" in out.read_text()

    # No route imports clips: one line naming the server, no traceback.
    clips = data.parent / "clips.csv"
    clips.write_text("item_id,author_id,caption\n999999,1,a clip\n")
    refused = _cli_process("import", "clips", str(clips), *d)
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr and "Conflicting lock" not in refused.stderr
    lines = [x for x in refused.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "held by the running steerfeed server" in lines[0]
    assert "'steerfeed import clips'" in lines[0] and "stop the server" in lines[0]


def test_keys_list_and_revoke_open_the_store_without_a_server(world_dir: Path) -> None:
    d = ["--data-dir", str(world_dir)]
    store = Store(world_dir / "steerfeed.duckdb")
    key = store.create_api_key("parent", user_id=5)
    store.close()
    key_id = key.split("_")[1]
    runner = CliRunner()
    listed = runner.invoke(app, ["keys", "list", *d])
    assert listed.exit_code == 0 and key_id in listed.stdout and "parent" in listed.stdout
    assert runner.invoke(app, ["keys", "revoke", key_id, *d]).exit_code == 0
    again = runner.invoke(app, ["keys", "revoke", key_id, *d])
    assert again.exit_code == 0 and "already revoked" in again.stdout
    unknown = runner.invoke(app, ["keys", "revoke", "abc123", *d])
    assert unknown.exit_code == 2 and "unknown key 'abc123'" in unknown.output
    store = Store(world_dir / "steerfeed.duckdb")
    try:
        assert store.lookup_api_key(key) is None
    finally:
        store.close()


def test_a_store_held_by_another_process_is_one_line_not_a_traceback(world_dir: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, duckdb; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
            "sys.stdin.readline()",
            str(world_dir / "steerfeed.duckdb"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        res = CliRunner().invoke(
            app, ["keys", "create", "--role", "admin", "--data-dir", str(world_dir)]
        )
        assert res.exit_code == 2
        assert res.exception is None or isinstance(res.exception, SystemExit)
        assert f"held by another process (pid {holder.pid})" in res.output
        assert "Traceback" not in res.output
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
