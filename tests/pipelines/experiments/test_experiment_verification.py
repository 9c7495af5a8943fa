"""Slow verification of the experiment statistics on many simulated experiments with known
truth (run with ``pytest -m slow``). Figures come from
:func:`pipelines.experiments.verification.verification_report`, the same function the
benchmark command prints."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.experiments import Arm, Experiment, assign, srm_check, unit_hash
from pipelines.experiments.verification import verification_report

pytestmark = pytest.mark.slow

logger = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    result = verification_report(n_runs=2000, seed=0)
    logger.info("verification report: %s", result)
    return result


def test_aa_false_positive_rate_is_five_percent(report: dict[str, Any]) -> None:
    assert 0.03 <= report["aa_false_positive_rate"] <= 0.07


def test_planted_effect_is_covered_by_95_percent_intervals(report: dict[str, Any]) -> None:
    assert 0.92 <= report["planted_effect"]["ci_coverage"] <= 0.98
    assert 0.92 <= report["ratio_metric_ci_coverage"] <= 0.98
    assert 0.92 <= report["cuped"]["ci_coverage"] <= 0.98


def test_cuped_reduces_variance_by_at_least_30_percent(report: dict[str, Any]) -> None:
    cuped = report["cuped"]
    assert cuped["variance_reduction_mean"] >= 0.30
    assert cuped["variance_reduction_mean"] == pytest.approx(
        cuped["variance_reduction_theory"], abs=0.03
    )
    assert cuped["power_cuped"] > cuped["power_raw"]


def test_srm_flags_a_broken_split_and_spares_a_fair_one(report: dict[str, Any]) -> None:
    srm = report["srm"]
    assert srm["alarm_rate_broken_52_48"] >= 0.95
    assert srm["alarm_rate_fair"] <= 0.01
    assert srm["hash_assignment_p_value"] > 0.001


def test_msprt_keeps_false_positives_below_alpha_under_continuous_peeking(
    report: dict[str, Any],
) -> None:
    ms = report["msprt"]
    assert ms["false_positive_rate"] <= report["alpha"]
    assert ms["naive_peeking_false_positive_rate"] > 2 * report["alpha"]  # why mSPRT is needed
    assert ms["confidence_sequence_coverage"] >= 1 - report["alpha"]
    assert ms["power_effect_0.2"] >= 0.9


def test_off_policy_intervals_cover_the_true_policy_value(report: dict[str, Any]) -> None:
    for name in ("ips", "snips", "dr"):
        assert 0.92 <= report["off_policy"][f"{name}_ci_coverage"] <= 0.98


def test_srm_catches_assignment_broken_on_purpose() -> None:
    """20k users through the real hash assignment; then lose 8 % of treatment users (as a
    crashing treatment client would), which makes the split about 52/48."""
    experiment = Experiment(
        name="broken",
        salt="broken-srm",
        arms=[Arm(name="control"), Arm(name="treatment")],
        status="running",
    )
    users = [f"user-{i}" for i in range(20_000)]
    arms = [assign(experiment, u) for u in users]
    fair = srm_check([arms.count("control"), arms.count("treatment")], [0.5, 0.5])
    assert not fair.alarm
    kept = [
        arm
        for arm, user in zip(arms, users, strict=True)
        if arm == "control" or unit_hash("client-crash", user) >= 0.08
    ]
    control, treatment = kept.count("control"), kept.count("treatment")
    assert control / (control + treatment) == pytest.approx(0.52, abs=0.006)
    assert srm_check([control, treatment], [0.5, 0.5]).alarm


def test_fair_hash_splits_do_not_alarm_in_99_percent_of_experiments() -> None:
    rng = np.random.default_rng(1)
    alarms = 0
    n_experiments = 300
    for k in range(n_experiments):
        salt = f"fair-{k}-{int(rng.integers(1 << 30))}"
        treated = sum(unit_hash(salt, i) >= 0.5 for i in range(2000))
        alarms += srm_check([2000 - treated, treated], [0.5, 0.5]).alarm
    assert alarms / n_experiments <= 0.01


def test_assignment_is_stable_across_processes_with_different_hash_seeds() -> None:
    code = (
        "from pipelines.experiments.assignment import unit_hash\n"
        "print(repr([unit_hash('salt-1', f'user-{i}') for i in range(20)]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == repr([unit_hash("salt-1", f"user-{i}") for i in range(20)])
