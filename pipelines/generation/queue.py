"""The generation queue: one row per job in the DuckDB table ``generation_jobs``.

Status moves ``queued -> running -> done``; a failed or timed-out attempt goes back to
``queued`` (not before a back-off) until ``max_attempts``, then ``failed``. Jobs that may no
longer run (a cameo's consent was revoked) become ``cancelled``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pipelines.generation.errors import UnknownJobError
from storage.store import Store, utcnow

STATUSES = ("queued", "running", "done", "failed", "cancelled")
KINDS = ("request", "remix", "gap")


@dataclass
class GenerationJob:
    """One queued prompt and what became of it."""

    job_id: str
    kind: str
    prompt: str
    status: str
    requested_by: int | None = None
    remix_of: int | None = None
    cameo_user_ids: list[int] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    attempts: int = 0
    max_attempts: int = 3
    error: str | None = None
    item_id: int | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    not_before: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        d = asdict(self)
        for k in ("created_at", "started_at", "finished_at", "not_before"):
            d[k] = d[k].isoformat() if d[k] is not None else None
        return d


_COLUMNS = (
    "job_id, kind, prompt, status, requested_by, remix_of, cameo_user_ids, topics, params, "
    "reason, attempts, max_attempts, error, item_id, created_at, started_at, finished_at, "
    "not_before"
)


def _job(row: dict[str, Any]) -> GenerationJob:
    return GenerationJob(
        job_id=row["job_id"],
        kind=row["kind"],
        prompt=row["prompt"],
        status=row["status"],
        requested_by=row["requested_by"],
        remix_of=row["remix_of"],
        cameo_user_ids=[int(x) for x in row["cameo_user_ids"] or []],
        topics=list(row["topics"] or []),
        params=json.loads(row["params"] or "{}"),
        reason=row["reason"] or "",
        attempts=int(row["attempts"]),
        max_attempts=int(row["max_attempts"]),
        error=row["error"],
        item_id=row["item_id"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        not_before=row["not_before"],
    )


class GenerationQueue:
    """Queue operations on the store (each a short transaction under the store's write lock).

    Parameters
    ----------
    store
        The DuckDB store holding ``generation_jobs``.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def enqueue(
        self,
        prompt: str,
        *,
        kind: str = "request",
        requested_by: int | None = None,
        remix_of: int | None = None,
        cameo_user_ids: list[int] | None = None,
        topics: list[str] | None = None,
        params: dict[str, Any] | None = None,
        reason: str = "",
        max_attempts: int = 3,
    ) -> GenerationJob:
        """Add a job; return it."""
        if kind not in KINDS:
            msg = f"unknown job kind {kind!r}; valid: {', '.join(KINDS)}"
            raise ValueError(msg)
        job_id = uuid.uuid4().hex[:16]
        with self.store.write() as cur:
            cur.execute(
                "INSERT INTO generation_jobs (job_id, kind, prompt, requested_by, remix_of, "
                "cameo_user_ids, topics, params, reason, max_attempts, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    job_id,
                    kind,
                    prompt,
                    requested_by,
                    remix_of,
                    list(cameo_user_ids or []),
                    list(topics or []),
                    json.dumps(params or {}),
                    reason,
                    max_attempts,
                    utcnow(),
                ],
            )
        return self.get(job_id)

    def get(self, job_id: str) -> GenerationJob:
        """One job; :class:`UnknownJobError` when there is none."""
        df = self.store.query(f"SELECT {_COLUMNS} FROM generation_jobs WHERE job_id = ?", [job_id])  # noqa: S608
        if df.height == 0:
            msg = f"unknown generation job {job_id!r}"
            raise UnknownJobError(msg)
        return _job(df.row(0, named=True))

    def list_jobs(self, *, status: str | None = None, limit: int = 50) -> list[GenerationJob]:
        """Newest jobs first (optionally of one status)."""
        where, params = ("WHERE status = ?", [status]) if status else ("", [])
        df = self.store.query(
            f"SELECT {_COLUMNS} FROM generation_jobs {where} ORDER BY created_at DESC LIMIT ?",  # noqa: S608
            [*params, limit],
        )
        return [_job(r) for r in df.iter_rows(named=True)]

    def counts(self) -> dict[str, int]:
        """Jobs per status."""
        df = self.store.query("SELECT status, count(*) AS n FROM generation_jobs GROUP BY 1")
        return {str(r["status"]): int(r["n"]) for r in df.iter_rows(named=True)}

    def pending_for(self, user_id: int) -> int:
        """Jobs of ``user_id`` still queued or running (what a per-user cap counts)."""
        n = self.store.scalar(
            "SELECT count(*) FROM generation_jobs "
            "WHERE requested_by = ? AND status IN ('queued', 'running')",
            [user_id],
        )
        return int(n or 0)

    def claim(self, n: int, *, now: datetime | None = None) -> list[GenerationJob]:
        """Mark up to ``n`` runnable jobs ``running`` (user requests before gap fills, oldest
        first) and return them."""
        if n <= 0:
            return []
        now = now or utcnow()
        with self.store.write() as cur:
            rows = cur.execute(
                "SELECT job_id FROM generation_jobs WHERE status = 'queued' "
                "AND (not_before IS NULL OR not_before <= ?) "
                "ORDER BY CASE WHEN kind = 'gap' THEN 1 ELSE 0 END, created_at LIMIT ?",
                [now, n],
            ).fetchall()
            ids = [r[0] for r in rows]
            if ids:
                cur.execute(
                    "UPDATE generation_jobs SET status = 'running', attempts = attempts + 1, "
                    "started_at = ?, error = NULL "
                    "WHERE job_id IN (SELECT unnest(?::VARCHAR[]))",
                    [now, ids],
                )
        return [self.get(i) for i in ids]

    def complete(self, job_id: str, item_id: int) -> None:
        """Mark a job done with the clip it made."""
        with self.store.write() as cur:
            cur.execute(
                "UPDATE generation_jobs SET status = 'done', item_id = ?, finished_at = ?, "
                "error = NULL WHERE job_id = ?",
                [item_id, utcnow(), job_id],
            )

    def fail(self, job_id: str, error: str, *, backoff_s: float, retry: bool = True) -> str:
        """Record a failed attempt: back to ``queued`` after ``backoff_s`` while attempts are
        left (and ``retry``), else ``failed``. Returns the new status."""
        job = self.get(job_id)
        now = utcnow()
        if job.status != "running":
            return job.status  # already settled (e.g. cancelled while running)
        again = retry and job.attempts < job.max_attempts
        status = "queued" if again else "failed"
        delay = backoff_s * (2 ** max(job.attempts - 1, 0))
        with self.store.write() as cur:
            cur.execute(
                "UPDATE generation_jobs SET status = ?, error = ?, not_before = ?, "
                "finished_at = ? WHERE job_id = ?",
                [
                    status,
                    error[:2000],
                    now + timedelta(seconds=delay) if again else None,
                    None if again else now,
                    job_id,
                ],
            )
        return status

    def stale(self, timeout_s: float, *, now: datetime | None = None) -> list[str]:
        """Ids of jobs running for longer than ``timeout_s`` (a crashed or stuck attempt)."""
        now = now or utcnow()
        df = self.store.query(
            "SELECT job_id FROM generation_jobs WHERE status = 'running' AND started_at < ?",
            [now - timedelta(seconds=timeout_s)],
        )
        return [str(x) for x in df["job_id"].to_list()]

    def cancel(self, job_ids: list[str], reason: str) -> int:
        """Cancel queued or running jobs; return how many."""
        if not job_ids:
            return 0
        with self.store.write() as cur:
            rows = cur.execute(
                "UPDATE generation_jobs SET status = 'cancelled', error = ?, finished_at = ? "
                "WHERE job_id IN (SELECT unnest(?::VARCHAR[])) "
                "AND status IN ('queued', 'running') RETURNING job_id",
                [reason, utcnow(), job_ids],
            ).fetchall()
        return len(rows)

    def open_jobs_with_cameo(self, user_id: int) -> list[str]:
        """Queued or running jobs that would use ``user_id``'s likeness."""
        df = self.store.query(
            "SELECT job_id FROM generation_jobs WHERE status IN ('queued', 'running') "
            "AND list_contains(cameo_user_ids, ?)",
            [user_id],
        )
        return [str(x) for x in df["job_id"].to_list()]

    def recent_prompts(self, kind: str, *, hours: float) -> set[str]:
        """Prompts of jobs of ``kind`` created in the last ``hours`` (any status but failed)."""
        df = self.store.query(
            "SELECT DISTINCT prompt FROM generation_jobs WHERE kind = ? AND created_at >= ? "
            "AND status <> 'failed'",
            [kind, utcnow() - timedelta(hours=hours)],
        )
        return {str(x) for x in df["prompt"].to_list()}
