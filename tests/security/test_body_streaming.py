"""Request bodies are counted as they stream and no body is read before the caller is
authenticated: a chunked body (no ``Content-Length``) can neither grow the server without a
key nor slip past the size limit with one.

The fast tests drive the real app through httpx's ASGI transport, which hands the body to the
app one chunk per ``receive()`` as the app asks for it, so the test sees how many bytes the app
pulled. The slow test measures a real uvicorn server's memory under 200 MiB chunked uploads.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.http.main import create_app
from api.http.settings import ApiSettings

CHUNK = 64 * 1024
LIMIT = 256 * 1024


class CountingBody:
    """A chunked request body of ``total`` bytes that records how much of it was pulled."""

    def __init__(self, total: int, *, head: bytes = b'{"events": [') -> None:
        self.total = total
        self.head = head
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = 0
        first = True
        while sent < self.total:
            chunk = self.head + b" " * (CHUNK - len(self.head)) if first else b" " * CHUNK
            first = False
            sent += len(chunk)
            self.pulled += len(chunk)
            yield chunk


def _post(app: Any, path: str, body: CountingBody, headers: dict[str, str]) -> httpx.Response:
    async def run() -> httpx.Response:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                return await c.post(
                    path, content=body, headers={"content-type": "application/json", **headers}
                )

    return asyncio.run(run())


@pytest.fixture()
def app_and_key(world_dir: Path) -> tuple[Any, str]:
    from pipelines.serving.engine import open_engine
    from storage.store import Store

    store = Store(world_dir / "steerfeed.duckdb")
    key = store.create_api_key("service")
    store.close()
    app = create_app(
        engine_factory=lambda: open_engine(world_dir),
        api_settings=ApiSettings(scheduler=False, max_body_bytes=LIMIT),
    )
    return app, key


def test_chunked_body_without_a_key_is_refused_before_any_byte_is_read(
    app_and_key: tuple[Any, str],
) -> None:
    app, _ = app_and_key
    body = CountingBody(16 * LIMIT)
    r = _post(app, "/v1/events", body, {})
    assert r.status_code == 401
    assert "API key" in r.json()["detail"]
    assert body.pulled == 0, f"the app read {body.pulled} bytes of an unauthenticated body"


def test_chunked_body_with_a_wrong_key_is_refused_before_any_byte_is_read(
    app_and_key: tuple[Any, str],
) -> None:
    app, _ = app_and_key
    body = CountingBody(16 * LIMIT)
    r = _post(app, "/v1/events", body, {"Authorization": "Bearer sf_000000000000_nope"})
    assert r.status_code == 401
    assert body.pulled == 0


def test_chunked_body_over_the_limit_is_413_and_reading_stops_at_the_limit(
    app_and_key: tuple[Any, str],
) -> None:
    app, key = app_and_key
    body = CountingBody(48 * LIMIT)  # the 12 MiB of the report, scaled to this app's limit
    r = _post(app, "/v1/events", body, {"Authorization": f"Bearer {key}"})
    assert r.status_code == 413, r.text
    assert "smaller batches" in r.json()["detail"]
    assert body.pulled <= LIMIT + CHUNK, f"read {body.pulled} bytes past a {LIMIT}-byte limit"


def test_chunked_body_under_the_limit_is_read_and_handled(app_and_key: tuple[Any, str]) -> None:
    app, key = app_and_key

    class Small(CountingBody):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            for part in (b'{"events": ', b"[]}"):
                self.pulled += len(part)
                yield part

    body = Small(0)
    r = _post(app, "/v1/events", body, {"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 0, "duplicates": 0}


# -- the memory probe against a real server ----------------------------------------------------
PROBE_MIB = 200


def _rss_kib(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, value = line.split(":", 1)
            out[name] = int(value.split()[0])
    return out


def chunked_upload(host: str, port: int, path: str, mib: int, headers: dict[str, str]) -> str:
    """Send ``mib`` MiB as a chunked POST over a raw socket; return the status line (or what
    happened when the server closed the connection first)."""
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
    head += "Content-Type: application/json\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    chunk = b" " * (1 << 20)
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    with socket.create_connection((host, port), timeout=120) as s:
        try:
            s.sendall(head.encode())
            for _ in range(mib):
                s.sendall(frame)
            s.sendall(b"0\r\n\r\n")
        except OSError as exc:  # the server answered and closed without reading the rest
            pass_exc = type(exc).__name__
        else:
            pass_exc = ""
        try:
            s.settimeout(30)
            status = s.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
        except OSError as exc:
            status = f"closed ({type(exc).__name__})"
    return status or f"closed ({pass_exc or 'empty reply'})"


def memory_probe(url: str, pid: int, *, parallel: int, mib: int = PROBE_MIB) -> dict[str, Any]:
    """RSS before and after ``parallel`` concurrent ``mib``-MiB chunked no-key POSTs."""
    host, port = url.removeprefix("http://").split(":")
    before = _rss_kib(pid)
    statuses: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        s = chunked_upload(host, int(port), "/v1/events", mib, {})
        with lock:
            statuses.append(s)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one) for _ in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = _rss_kib(pid)
    return {
        "parallel": parallel,
        "mib_each": mib,
        "rss_before_mib": before["VmRSS"] / 1024,
        "rss_after_mib": after["VmRSS"] / 1024,
        "hwm_growth_mib": (after["VmHWM"] - before["VmHWM"]) / 1024,
        "seconds": time.perf_counter() - t0,
        "statuses": statuses,
    }


@pytest.fixture()
def server(world_dir: Path, tmp_path: Path) -> Iterator[tuple[Any, str, str]]:
    """A real uvicorn server on the tiny world, and a service key made before it started."""
    from pipelines.offline.bench import start_server
    from storage.store import Store

    store = Store(world_dir / "steerfeed.duckdb")
    key = store.create_api_key("service")
    store.close()
    proc, url = start_server(world_dir, log_path=tmp_path / "server.log")
    try:
        yield proc, url, key
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.slow
def test_chunked_uploads_do_not_grow_a_real_server(server: tuple[Any, str, str]) -> None:
    """One, then three parallel 200 MiB chunked POSTs without a key: the server's peak RSS
    grows by less than 32 MiB (it grew by ~400 MiB and 2.5 GiB before bodies were counted).
    A 12 MiB chunked body with a service key is a 413 (it was accepted)."""
    proc, url, key = server
    httpx.get(url + "/healthz", timeout=30)  # warm
    results = [memory_probe(url, proc.pid, parallel=n) for n in (1, 3)]
    host, port = url.removeprefix("http://").split(":")
    before = _rss_kib(proc.pid)
    keyed = chunked_upload(host, int(port), "/v1/events", 12, {"Authorization": f"Bearer {key}"})
    keyed_growth = (_rss_kib(proc.pid)["VmHWM"] - before["VmHWM"]) / 1024
    if os.environ.get("STEERFEED_PROBE_PRINT"):
        for res in results:
            print(res)
        print({"service_key_12_mib": keyed, "hwm_growth_mib": keyed_growth})
    for res in results:
        assert all(s.startswith(("HTTP/1.1 401", "closed")) for s in res["statuses"]), res
        assert res["hwm_growth_mib"] < 32, res
    assert keyed.startswith("HTTP/1.1 413"), keyed
