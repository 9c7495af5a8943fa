"""The user simulator: its hidden wellbeing dynamics, and a small run against the real
pipeline through ``steerfeed simulate`` and the experiments commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from api.cli import app
from pipelines.offline.experiments_simulator import wellbeing_step

EXAMPLE = (
    Path(__file__).resolve().parents[3]
    / "pipelines"
    / "experiments"
    / "examples"
    / "wellbeing_vs_engagement.yaml"
)


def _step(**kw: Any) -> float:
    args: dict[str, Any] = {
        "affinity": 0.5,
        "intensity": 0.5,
        "watch_frac": 1.0,
        "connected": 0.0,
        "compulsivity": 0.5,
        "late": False,
        "long_session": False,
    }
    args.update(kw)
    return wellbeing_step(0.5, **args)


def test_compulsive_low_value_viewing_erodes_wellbeing() -> None:
    assert _step(affinity=0.1, intensity=0.9, compulsivity=0.9) < 0.5
    # The more compulsive the user, the larger the loss on the same clip.
    assert _step(affinity=0.1, intensity=0.9, compulsivity=0.9) < _step(
        affinity=0.1, intensity=0.9, compulsivity=0.1
    )


def test_valued_and_connected_viewing_restores_wellbeing() -> None:
    assert _step(affinity=0.9, intensity=0.1) > 0.5
    assert _step(affinity=0.45, intensity=0.0, connected=1.0) > _step(affinity=0.45, intensity=0.0)


def test_late_nights_and_long_sessions_cost_and_partial_watches_count_less() -> None:
    base = _step(affinity=0.6, intensity=0.2)
    assert _step(affinity=0.6, intensity=0.2, late=True) < base
    assert _step(affinity=0.6, intensity=0.2, long_session=True) < base
    assert abs(_step(affinity=0.1, intensity=0.9, watch_frac=0.1) - 0.5) < abs(
        _step(affinity=0.1, intensity=0.9) - 0.5
    )
    assert (
        wellbeing_step(
            0.0,
            affinity=0.0,
            intensity=1.0,
            watch_frac=1.0,
            connected=0.0,
            compulsivity=1.0,
            late=True,
            long_session=True,
        )
        == 0.0
    )


def test_simulate_command_runs_the_experiment_on_the_real_pipeline(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "sim"
    res = runner.invoke(
        app,
        [
            "simulate",
            "--experiment",
            str(EXAMPLE),
            "--days",
            "1",
            "--users",
            "40",
            "--clips",
            "300",
            "--data-dir",
            str(out),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.output[res.output.index("{") :])
    assert report["simulated_users"] == 40
    assert sum(a["users"] for a in report["arms"]) == 40  # allocation 1, no holdback
    assert report["pages"] > 0
    # Exposure logged on the impressions equals the assignment the simulator computed.
    logged = {a["name"]: a["users"] for a in report["analysis"]["arms"]}
    visited = {d["arm"]: d["sessions_per_user"] * d["users"] for d in report["daily"]}
    for arm, n in logged.items():
        assert n <= next(a["users"] for a in report["arms"] if a["name"] == arm)
        assert (n > 0) == (visited.get(arm, 0) > 0)
    assert {d["arm"] for d in report["daily"]} == {"control", "wellbeing"}
    assert all(0.0 <= d["wellbeing"] <= 1.0 for d in report["daily"])
    comp = report["comparisons"][0]
    assert comp["arm"] == "wellbeing" and "wellbeing_change" in comp["metrics"]
    assert "minutes" in comp["metrics"] and "guardrails" in comp

    # The experiments commands read the same store.
    res = runner.invoke(app, ["experiments", "list", "--data-dir", str(out), "--json"])
    assert res.exit_code == 0, res.output
    items = json.loads(res.stdout)["experiments"]
    assert [(e["name"], e["status"]) for e in items] == [("wellbeing-vs-engagement", "running")]
    res = runner.invoke(
        app, ["experiments", "analyze", "wellbeing-vs-engagement", "--data-dir", str(out), "--json"]
    )
    assert res.exit_code == 0, res.output
    assert {a["name"]: a["users"] for a in json.loads(res.stdout)["arms"]} == logged
    res = runner.invoke(
        app, ["experiments", "stop", "wellbeing-vs-engagement", "--data-dir", str(out)]
    )
    assert res.exit_code == 0 and "stopped" in res.output
    res = runner.invoke(app, ["experiments", "start", "nope", "--data-dir", str(out)])
    assert res.exit_code == 2 and "unknown experiment 'nope'" in res.output


def test_add_command_rejects_a_bad_definition(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsalt: s\narms:\n  - name: a\n    overrides: {steer: 1}\n")
    (tmp_path / "d").mkdir()
    res = CliRunner().invoke(
        app, ["experiments", "add", str(bad), "--data-dir", str(tmp_path / "d")]
    )
    assert res.exit_code == 2
    assert "unknown override 'steer'" in res.output


@pytest.mark.slow
def test_verify_command_reports_the_statistical_checks() -> None:
    res = CliRunner().invoke(app, ["experiments", "verify", "--runs", "200", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["n_runs"] == 200
    assert 0.0 <= report["aa_false_positive_rate"] <= 0.12  # 5 % +/- sampling error of 200 runs
    assert report["cuped"]["variance_reduction_mean"] >= 0.3
