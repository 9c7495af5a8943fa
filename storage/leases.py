"""Leases on named jobs in the store, so a periodic job runs once per deployment.

Every serving worker runs the scheduler; before a periodic job runs, the worker takes the job's
lease (table ``job_leases``, migration 16). A lease names its holder and expires; the holder
renews it on its next run, and when the holder dies another worker takes it once it expires.
Taking a lease is one transaction: an insert that does nothing when the row exists, then an
update that succeeds only for the holder or once the lease expired, so two workers never both
get it (on PostgreSQL the second waits for the first's row and then finds it held).
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

import duckdb

from storage.errors import DuplicateEntityError
from storage.store import Store, utcnow


def worker_id() -> str:
    """A name for this process among a deployment's workers (host, pid and a random tag)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def acquire(
    store: Store, name: str, holder: str, ttl_s: float, *, now: datetime | None = None
) -> bool:
    """Take or renew the lease on ``name`` for ``ttl_s`` seconds; ``False`` while another
    holder's lease has not expired."""
    now = now or utcnow()
    until = now + timedelta(seconds=ttl_s)
    try:
        with store.write() as cur:
            got = cur.execute(
                "INSERT OR IGNORE INTO job_leases (name, holder, expires_at) VALUES (?, ?, ?) "
                "RETURNING name",
                [name, holder, until],
            ).fetchall()
            if got:
                return True
            got = cur.execute(
                "UPDATE job_leases SET holder = ?, expires_at = ? "
                "WHERE name = ? AND (holder = ? OR expires_at <= ?) RETURNING name",
                [holder, until, name, holder, now],
            ).fetchall()
    except (DuplicateEntityError, duckdb.ConstraintException, duckdb.TransactionException):
        # Another worker's transaction took the lease between our read and our commit.
        return False
    return bool(got)


def release(store: Store, holder: str) -> int:
    """Give up every lease ``holder`` has (a worker shutting down), so another worker can
    take the jobs at once; returns how many were held."""
    with store.write() as cur:
        rows = cur.execute(
            "DELETE FROM job_leases WHERE holder = ? RETURNING name", [holder]
        ).fetchall()
    return len(rows)


def holders(store: Store) -> dict[str, tuple[str, datetime]]:
    """Every lease: job name -> (holder, expires_at)."""
    df = store.query("SELECT name, holder, expires_at FROM job_leases ORDER BY name")
    return {str(r[0]): (str(r[1]), r[2]) for r in df.iter_rows()}
