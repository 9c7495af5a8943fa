"""``steerfeed eval demo``: learned vs hand-weighted on held-out days, truth known."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from api.cli import app


def test_eval_demo_reports_ndcg_against_the_true_affinity(tmp_path: Path) -> None:
    out_file = tmp_path / "demo_eval.json"
    args = ["eval", "demo", "--users", "60", "--clips", "300", "--events", "5000", "--days", "8"]
    res = CliRunner().invoke(
        app, [*args, "--holdout-days", "3", "--no-embed", "--out", str(out_file)]
    )
    assert res.exit_code == 0, res.output
    report = json.loads(out_file.read_text())
    truth = report["true_affinity"]
    assert set(truth) == {"learned", "hand_weighted", "random"}
    assert all(0.0 < v <= 1.0 for v in truth.values())
    assert truth["learned"] > truth["random"]
    assert report["n_train_impressions"] > report["n_holdout_impressions"] > 0
    assert report["holdout_days"] == 3.0


def test_eval_demo_rejects_a_holdout_longer_than_the_log() -> None:
    res = CliRunner().invoke(app, ["eval", "demo", "--days", "5", "--holdout-days", "6"])
    assert res.exit_code == 2
    assert "--holdout-days" in res.output
    res = CliRunner().invoke(app, ["eval", "demo", "--users", "3"])
    assert res.exit_code == 2 and "--users" in res.output
