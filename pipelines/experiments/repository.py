"""The experiments tables in the DuckDB store (migration 5): definitions and stored analyses.

:class:`ExperimentRepository` reads and writes ``experiments`` (one row per experiment, the
validated definition as JSON) and ``experiment_results`` (analysis and simulation reports).
Serving reads :meth:`ExperimentRepository.running` on every request; it is cached for
``cache_ttl_s`` seconds (writes through the same repository refresh it at once, a start or stop
from another process is seen within the TTL).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import datetime
from typing import Any

from pipelines.experiments.definitions import Experiment, ExperimentStatus, parse_experiment
from pipelines.experiments.errors import ExperimentError
from storage.store import Store, utcnow

logger = logging.getLogger(__name__)

RESULT_KINDS = ("analysis", "simulation")


class UnknownExperimentError(ExperimentError, KeyError):
    """No experiment of that name is stored."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown experiment"


class ExperimentRepository:
    """Stored experiments and their reports.

    Parameters
    ----------
    store : Store
        The engine's store (migration 5 applied).
    cache_ttl_s : float, optional
        How long the list of running experiments is reused by :meth:`running`.
    """

    def __init__(self, store: Store, *, cache_ttl_s: float = 5.0) -> None:
        self.store = store
        self.cache_ttl_s = cache_ttl_s
        self._lock = threading.Lock()
        self._running: tuple[float, list[Experiment]] | None = None

    # -- definitions --------------------------------------------------------------------------
    def save(self, experiment: Experiment) -> Experiment:
        """Insert or replace an experiment (its status is the definition's).

        Parameters
        ----------
        experiment : Experiment
            Validated definition.

        Returns
        -------
        Experiment
            The stored experiment.
        """
        now = utcnow()
        payload = json.dumps(experiment.model_dump(mode="json"))
        with self.store.write() as cur:
            cur.execute(
                "INSERT INTO experiments (name, definition, status, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "definition = excluded.definition, status = excluded.status, "
                "updated_at = excluded.updated_at",
                [experiment.name, payload, experiment.status, now, now],
            )
        self._invalidate()
        logger.info("saved experiment name=%s status=%s", experiment.name, experiment.status)
        return experiment

    def get(self, name: str) -> Experiment:
        """Return the experiment called ``name``.

        Raises
        ------
        UnknownExperimentError
            If none is stored; the message lists the stored names.
        """
        df = self.store.query("SELECT definition FROM experiments WHERE name = ?", [name])
        if df.height == 0:
            names = self.names()
            msg = f"unknown experiment {name!r}; stored: {names or 'none'}"
            raise UnknownExperimentError(msg)
        return parse_experiment(json.loads(df["definition"][0]), source=f"experiment {name!r}")

    def names(self) -> list[str]:
        """Stored experiment names, sorted."""
        return [
            str(n) for n in self.store.query("SELECT name FROM experiments ORDER BY name")["name"]
        ]

    def list_all(self) -> list[dict[str, Any]]:
        """Every stored experiment: definition plus ``created_at`` / ``updated_at``."""
        df = self.store.query(
            "SELECT name, definition, created_at, updated_at FROM experiments ORDER BY name"
        )
        out: list[dict[str, Any]] = []
        for row in df.iter_rows(named=True):
            item = json.loads(row["definition"])
            item["created_at"] = _iso(row["created_at"])
            item["updated_at"] = _iso(row["updated_at"])
            out.append(item)
        return out

    def set_status(self, name: str, status: ExperimentStatus) -> Experiment:
        """Start (``running``) or stop (``stopped``) an experiment.

        Raises
        ------
        UnknownExperimentError
            If none is stored under ``name``.
        """
        current = self.get(name)
        updated = parse_experiment(
            {**current.model_dump(mode="json"), "status": status}, source=f"experiment {name!r}"
        )
        return self.save(updated)

    def running(self) -> list[Experiment]:
        """Experiments with status ``running``, sorted by name (cached ``cache_ttl_s``)."""
        now = time.monotonic()
        with self._lock:
            cached = self._running
        if cached is not None and now - cached[0] < self.cache_ttl_s:
            return cached[1]
        df = self.store.query(
            "SELECT name, definition FROM experiments WHERE status = 'running' ORDER BY name"
        )
        exps = [
            parse_experiment(json.loads(d), source=f"experiment {n!r}")
            for n, d in zip(df["name"].to_list(), df["definition"].to_list(), strict=True)
        ]
        with self._lock:
            self._running = (now, exps)
        return exps

    def _invalidate(self) -> None:
        with self._lock:
            self._running = None

    # -- results ------------------------------------------------------------------------------
    def save_result(self, experiment: str, kind: str, report: dict[str, Any]) -> str:
        """Store an analysis or simulation report; return its id.

        Raises
        ------
        ExperimentError
            On an unknown ``kind``.
        """
        if kind not in RESULT_KINDS:
            msg = f"unknown result kind {kind!r}; valid: {list(RESULT_KINDS)}"
            raise ExperimentError(msg)
        result_id = uuid.uuid4().hex
        with self.store.write() as cur:
            cur.execute(
                "INSERT INTO experiment_results (result_id, experiment, kind, computed_at, report) "
                "VALUES (?, ?, ?, ?, ?)",
                [result_id, experiment, kind, utcnow(), json.dumps(report, default=_json_default)],
            )
        return result_id

    def latest_result(self, experiment: str, kind: str) -> dict[str, Any] | None:
        """The newest stored report of ``kind`` for an experiment, or None."""
        df = self.store.query(
            "SELECT report, computed_at FROM experiment_results WHERE experiment = ? AND kind = ? "
            "ORDER BY computed_at DESC LIMIT 1",
            [experiment, kind],
        )
        if df.height == 0:
            return None
        report: dict[str, Any] = json.loads(df["report"][0])
        report.setdefault("computed_at", _iso(df["computed_at"][0]))
        return report


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    msg = f"cannot store {type(value).__name__} in a report"
    raise TypeError(msg)
