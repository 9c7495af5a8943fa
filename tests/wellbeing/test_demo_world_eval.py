"""The whole loop on a demo world: simulated surveys, the job, and the head's effect (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.offline.demo_world import WorldConfig
from pipelines.offline.wellbeing_evaluate import EVAL_FILE, evaluate_on_demo_world


@pytest.mark.slow
def test_satisfaction_head_raises_true_satisfaction_on_the_demo_world(tmp_path: Path) -> None:
    cfg = WorldConfig(n_users=1000, n_clips=8000, n_events=200_000, seed=0)
    report = evaluate_on_demo_world(tmp_path, config=cfg, weights=(0.0, 1.0), n_users=300)
    assert (tmp_path / EVAL_FILE).exists()
    est, sim = report["estimates"], report["simulation"]
    truth = sim["true_mean_session"]
    # Happier people answer more: weighting moves the estimate toward the truth.
    assert abs(est["propensity_weighted_mean"] - truth) < abs(est["naive_mean"] - truth)
    held = report["satisfaction_job"]["heldout"]
    assert held["mae"] < held["mae_constant_baseline"]
    with_head = report["value_model_comparison"]["arms"][1]
    assert with_head["satisfaction_diff"] - with_head["satisfaction_diff_ci95"] > 0
    assert with_head["intensity_diff"] < 0
