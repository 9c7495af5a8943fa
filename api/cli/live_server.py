"""The CLI beside a running server: find the live ``steerfeed serve`` that holds a data folder,
call it with the local credential, and say in one line what to do when a command cannot run.

DuckDB lets one process open the store for writing. While ``steerfeed serve`` holds the data
folder, commands whose work has a route (keys, ``jobs run``, ``report satisfaction``,
``generate``) send it to the server (:func:`find_live_server`, :meth:`LiveServer.call`);
the others stop with :func:`held_store_message` instead of DuckDB's lock traceback.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx

from api.http.local_access import (
    LOCAL_TOKEN_HEADER,
    TOKEN_FILE,
    ServerRecord,
    read_server_record,
    read_token,
    server_alive,
)

logger = logging.getLogger(__name__)

#: How long a command waits for a server that holds the store but does not answer yet (it is
#: still loading its state).
STARTING_WAIT_S = 120.0


class ServerCallError(Exception):
    """The server refused or failed a call (the message is one line: status and detail)."""


class NoLocalAccessError(Exception):
    """A live server holds the store but this command cannot reach it (the message says why
    and what to do)."""


@dataclass(frozen=True)
class LiveServer:
    """A running ``steerfeed serve`` of a data folder, and its local token."""

    record: ServerRecord
    token: str

    @property
    def url(self) -> str:
        """Its base URL from this machine."""
        return self.record.url

    def describe(self) -> str:
        """``pid N, URL`` for messages."""
        return f"pid {self.record.pid}, {self.url}"

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout_s: float = 3600.0,
    ) -> httpx.Response:
        """Call the server as its local admin; :class:`ServerCallError` for any error status
        or a failed connection."""
        try:
            r = httpx.request(
                method,
                self.url + path,
                json=json,
                params=params,
                headers={LOCAL_TOKEN_HEADER: self.token},
                timeout=timeout_s,
            )
        except httpx.HTTPError as exc:
            msg = f"the server ({self.describe()}) did not answer {method} {path}: {exc}"
            raise ServerCallError(msg) from exc
        if r.status_code >= 400:
            raise ServerCallError(f"the server answered {r.status_code}: {_detail(r)}")
        return r


def _detail(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:300]
    if isinstance(body, dict):
        if "message" in body:
            return str(body["message"])
        detail = body.get("detail", body)
        if isinstance(detail, dict) and "message" in detail:
            return f"{detail.get('reason', 'refused')}: {detail['message']}"
        return str(detail)
    return str(body)


def _answers(record: ServerRecord) -> bool:
    try:
        return httpx.get(record.url + "/livez", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def holding_server(data_dir: Path) -> ServerRecord | None:
    """``server.json`` of ``data_dir`` when its server process is alive, else ``None``."""
    record = read_server_record(data_dir)
    return record if record is not None and server_alive(record) else None


def find_live_server(data_dir: Path, *, wait_s: float = STARTING_WAIT_S) -> LiveServer | None:
    """The live server holding ``data_dir``, or ``None`` when none runs (no ``server.json``,
    or its process is gone: the files of a server that died are ignored).

    A server whose process runs but does not answer yet is loading its state: this waits up to
    ``wait_s`` for it. Raises :class:`NoLocalAccessError` when a live server cannot be used
    (its token is not readable by this user, it listens on no loopback address, or it never
    answered).
    """
    record = holding_server(data_dir)
    if record is None:
        return None
    where = f"the steerfeed server holding {data_dir} (pid {record.pid}, {record.url})"
    if not record.reachable_on_loopback:
        msg = (
            f"{where} listens on {record.host} only, and the local credential is accepted "
            "from loopback only: stop it first, or use the HTTP API with an admin key"
        )
        raise NoLocalAccessError(msg)
    try:
        token = read_token(data_dir)
    except OSError as exc:
        msg = (
            f"cannot read {Path(data_dir) / TOKEN_FILE} ({exc.strerror}), the credential of "
            f"{where}; run this as the user who started it, or use the HTTP API with an "
            "admin key"
        )
        raise NoLocalAccessError(msg) from exc
    deadline = time.monotonic() + wait_s
    waited = False
    while not _answers(record):
        if not server_alive(record):
            return None
        if time.monotonic() > deadline:
            msg = f"{where} did not answer /livez within {wait_s:.0f} s; is it stuck?"
            raise NoLocalAccessError(msg)
        if not waited:
            logger.info("waiting for the server (pid %d) to finish starting", record.pid)
            waited = True
        time.sleep(0.5)
    return LiveServer(record, token)


def is_lock_error(exc: BaseException) -> bool:
    """Whether ``exc`` is DuckDB refusing to open a store another process holds."""
    if not isinstance(exc, duckdb.Error):
        return False
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


def held_store_message(
    data_dir: Path, *, what: str = "this command", exc: BaseException | None = None
) -> str:
    """One line: who holds the store of ``data_dir`` (``exc``: DuckDB's lock error, which names
    the process) and what to do instead."""
    record = holding_server(data_dir)
    if record is not None:
        return (
            f"the store in {data_dir} is held by the running steerfeed server (pid "
            f"{record.pid}, {record.url}) and {what} has no route through it: stop the server "
            f"first (Ctrl-C, or kill -TERM {record.pid}), or do it over the HTTP API "
            "(docs/api.md)"
        )
    found = re.search(r"\(PID (\d+)\)", str(exc or ""))
    who = f"another process (pid {found.group(1)})" if found else "another process"
    return (
        f"the store in {data_dir} is held by {who}; DuckDB allows one writing process: "
        "stop it first"
    )
