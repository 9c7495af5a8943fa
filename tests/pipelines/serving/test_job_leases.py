"""Periodic jobs run once per deployment: a worker's scheduler runs a job only while it holds
the job's lease in the store."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pipelines.serving.jobs import JobSpec
from pipelines.serving.scheduler import run_if_leased
from storage.leases import acquire, holders
from storage.store import utcnow


def test_a_job_runs_only_in_the_worker_holding_its_lease(engine: Any) -> None:
    runs: list[str] = []

    def tick(ctx: Any) -> dict[str, Any]:
        runs.append("tick")
        return {}

    table = {"tick": JobSpec("tick", tick, 60, "a test job")}
    # Another worker holds the job: this one skips it.
    assert acquire(engine.store, "tick", "other-worker", 90)
    assert not run_if_leased(engine, "tick", table, "this-worker")
    assert runs == []
    # The other worker died: once its lease expired, this one takes the job and renews it.
    with engine.store.write() as cur:
        cur.execute(
            "UPDATE job_leases SET expires_at = ? WHERE name = 'tick'",
            [utcnow() - timedelta(seconds=1)],
        )
    assert run_if_leased(engine, "tick", table, "this-worker")
    assert run_if_leased(engine, "tick", table, "this-worker")
    assert runs == ["tick", "tick"]
    holder, until = holders(engine.store)["tick"]
    assert holder == "this-worker" and until > utcnow() + timedelta(seconds=60)
    assert not run_if_leased(engine, "tick", table, "other-worker")
    assert runs == ["tick", "tick"]
