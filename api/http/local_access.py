"""The local credential: how the CLI works beside a running server on the embedded store.

DuckDB lets one process open the data folder's store for writing, so while ``steerfeed serve``
holds it a CLI command cannot. Instead the command asks the server: at start the server
writes, into the data folder,

- ``server.json`` (pid, host, port, start time; readable by anyone, it holds no secret), and
- ``server.token`` (a random token, mode 0600: only the folder's owner can read it).

A request carrying that token in the :data:`LOCAL_TOKEN_HEADER` header, from a loopback
address, is an ``admin`` caller (:data:`LOCAL_PRINCIPAL`). Whoever can read the token can
already open the store itself whenever the server is stopped, so it grants nothing new; the
loopback check keeps the token useless from another machine even if it leaks. Both files are
removed when the server stops, and a new token is made at every start.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from api.http.auth import ROLE_ADMIN, Principal

logger = logging.getLogger(__name__)

SERVER_FILE = "server.json"
TOKEN_FILE = "server.token"  # noqa: S105  (a file name)
LOCAL_TOKEN_HEADER = "X-Steerfeed-Local-Token"  # noqa: S105  (a header name)
#: The caller a valid local token stands for (its ``key_id`` shows in the audit log).
LOCAL_PRINCIPAL = Principal(key_id="local-cli", role=ROLE_ADMIN, user_id=None)


@dataclass(frozen=True)
class ServerRecord:
    """What ``server.json`` says about the server holding a data folder."""

    pid: int
    host: str
    port: int
    started_at: float
    #: The process's start time in clock ticks (Linux), so a reused pid is not taken for it.
    proc_start: str | None = None

    @property
    def url(self) -> str:
        """The server's base URL as seen from this machine (a wildcard bind is reached on
        loopback)."""
        host = self.host
        if host in ("", "0.0.0.0"):  # noqa: S104  (a bind address, read here, not bound)
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def reachable_on_loopback(self) -> bool:
        """Whether a client on this machine reaches it from a loopback address (the only
        addresses the local token is accepted from)."""
        return self.host in ("", "0.0.0.0", "::", "localhost") or is_loopback(self.host)  # noqa: S104


def is_loopback(address: str) -> bool:
    """Whether ``address`` (a client or bind address) is a loopback address."""
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def announce_server(data_dir: Path, *, host: str, port: int) -> ServerRecord:
    """Write a fresh ``server.token`` (0600) and ``server.json`` for this process (``serve``
    calls it before the server starts)."""
    data_dir = Path(data_dir)
    token_path = data_dir / TOKEN_FILE
    token_path.unlink(missing_ok=True)  # a stale token of a server that died
    # O_EXCL and mode 0600 at creation: the token is never readable by others, not even briefly.
    fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32))
    pid = os.getpid()
    record = ServerRecord(
        pid=pid, host=host, port=port, started_at=time.time(), proc_start=process_start(pid)
    )
    tmp = data_dir / f".{SERVER_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(asdict(record)))
    os.replace(tmp, data_dir / SERVER_FILE)  # readers never see half a file
    return record


def withdraw_server(data_dir: Path) -> None:
    """Remove the files :func:`announce_server` wrote, when this process wrote them."""
    data_dir = Path(data_dir)
    record = read_server_record(data_dir)
    if record is None or record.pid != os.getpid():
        return
    (data_dir / TOKEN_FILE).unlink(missing_ok=True)
    (data_dir / SERVER_FILE).unlink(missing_ok=True)


def read_server_record(data_dir: Path) -> ServerRecord | None:
    """``server.json`` of ``data_dir``, or ``None`` when there is none (or it is unreadable)."""
    try:
        raw = json.loads((Path(data_dir) / SERVER_FILE).read_text())
        return ServerRecord(
            pid=int(raw["pid"]),
            host=str(raw["host"]),
            port=int(raw["port"]),
            started_at=float(raw["started_at"]),
            proc_start=raw.get("proc_start"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from ``/proc``), or ``None``
    where there is no ``/proc`` or no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) is in parentheses and may hold spaces.
    return stat.rsplit(")", 1)[-1].split()[19]


def server_alive(record: ServerRecord) -> bool:
    """Whether the process that wrote ``record`` still runs (not just some process that got
    its pid since)."""
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    if record.proc_start is None:
        return True
    return process_start(record.pid) in (record.proc_start, None)


def read_token(data_dir: Path) -> str:
    """The local token of ``data_dir`` (``OSError`` when missing or not readable by this
    user)."""
    return (Path(data_dir) / TOKEN_FILE).read_text().strip()


def token_of_this_server(data_dir: Path) -> str | None:
    """The token the app accepts: the one written for this process or its parent (uvicorn's
    workers are children of ``serve``), else ``None`` (no local access, e.g. an app started
    without ``steerfeed serve``)."""
    record = read_server_record(data_dir)
    if record is None or record.pid not in (os.getpid(), os.getppid()):
        return None
    try:
        return read_token(data_dir) or None
    except OSError:
        logger.warning("cannot read the local token in %s; local CLI access is off", data_dir)
        return None


def local_token_matches(sent: str, expected: str | None, address: str) -> bool:
    """Whether ``sent`` is this server's local token, sent from a loopback ``address``."""
    if expected is None or not is_loopback(address):
        return False
    return secrets.compare_digest(sent.encode(), expected.encode())
