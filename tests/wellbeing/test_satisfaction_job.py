"""The satisfaction model, its job on the tiny demo world, the analytics views and the report."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from pipelines.offline.demo_world import WorldConfig, build_world
from pipelines.offline.wellbeing_simulate import simulate_surveys
from pipelines.serving.jobs import JobContext, job_table, run_job
from wellbeing.analytics import REPORTS, UnknownReportError, run_report
from wellbeing.propensity import ipw_mean
from wellbeing.report import render_report
from wellbeing.satisfaction import (
    SAT_CLIP_FEATURES,
    SAT_SESSION_FEATURES,
    SatisfactionModel,
    SatisfactionModelError,
    calibration,
)
from wellbeing.surveys import SamplingPolicy

# The conftest's tiny world: same sizes and seed give the same ground truth.
TINY = WorldConfig(n_users=150, n_clips=800, n_events=15_000, seed=3)


def test_model_recovers_a_planted_effect_and_round_trips() -> None:
    rng = np.random.default_rng(1)
    n = 600
    data = {c: rng.random(n) for c in (*SAT_CLIP_FEATURES, *SAT_SESSION_FEATURES)}
    y = np.clip(3.0 + 2.0 * (data["like_rate"] - 0.5) - 1.5 * data["late_night"], 1, 5)
    frame = pl.DataFrame(data)
    model = SatisfactionModel(l2=0.1).fit(frame, np.clip(y + rng.normal(0, 0.2, n), 1, 5))
    coefs = model.coefficients()
    assert coefs["like_rate"] > 0.4 and coefs["late_night"] < -0.3
    assert abs(coefs["minutes_log"]) < 0.05
    again = SatisfactionModel.from_params(model.to_params())
    np.testing.assert_allclose(again.predict(frame), model.predict(frame))
    assert again.version == model.version
    cal = calibration(model.predict(frame), y)
    assert cal["ece"] < 0.1 and cal["r2"] > 0.8
    with pytest.raises(SatisfactionModelError, match="at least 20"):
        SatisfactionModel().fit(frame.head(5), y[:5])
    with pytest.raises(SatisfactionModelError, match="1-5 scale"):
        SatisfactionModel().fit(frame, y * 3)


def test_satisfaction_job_imputes_every_session_and_reports(engine: Any, tmp_path: Path) -> None:
    assert "satisfaction" in job_table(engine.settings)
    world = build_world(TINY)
    policy = SamplingPolicy(rate_per_week=5.0, min_spacing_hours=6.0, periodic_questions=())
    sim = simulate_surveys(engine.store, world, policy=policy, seed=3)
    assert sim.prompts > 40 and 0 < sim.answered < sim.prompts
    report = run_job("satisfaction", JobContext(engine))
    assert report.ok, report.message
    c = report.counts
    assert c["imputed_sessions"] == c["sessions"] == sim.sessions
    assert c["answered_sessions"] >= 20
    assert c["calibration_bins"] and c["heldout"]["mae"] is not None
    served = engine.wellbeing.satisfaction.model
    assert served is not None and served.version == c["model_version"]
    stored = engine.store.query(
        "SELECT count(*) AS n, count(observed) AS asked, min(predicted) AS lo, "
        "max(predicted) AS hi FROM session_satisfaction"
    ).row(0, named=True)
    assert stored["n"] == sim.sessions and stored["asked"] == c["answered_sessions"]
    assert 1.0 <= stored["lo"] <= stored["hi"] <= 5.0
    props = engine.store.query(
        "SELECT response_propensity FROM survey_prompts WHERE status <> 'shown'"
    )["response_propensity"]
    assert props.null_count() == 0 and props.min() > 0

    # Weighted answers stay within the scale and the views serve every named report.
    answers = run_report(engine.store, "weekly_satisfaction_by_cohort")
    # A weighted mean of equal answers may round past the scale by one ulp (DuckDB sums in
    # any order): 5.000000000000001 is 5.
    assert answers.height and answers["weighted_mean"].is_between(1 - 1e-9, 5 + 1e-9).all()
    for name in REPORTS:
        run_report(engine.store, name)
    assert run_report(engine.store, "time_spent_vs_satisfaction")["sessions"].sum() == sim.sessions
    arms = run_report(engine.store, "by_experiment_arm")
    assert arms["experiment"].to_list() == ["none"]
    with engine.store.write() as cur:  # arms as the impression logger writes them
        cur.execute(
            'UPDATE session_satisfaction SET experiments = \'{"ranker": "treatment"}\' '
            "WHERE user_id IN (SELECT DISTINCT user_id FROM session_satisfaction LIMIT 10)"
        )
    arms = run_report(engine.store, "by_experiment_arm")
    assert set(zip(arms["experiment"], arms["arm"], strict=True)) == {
        ("none", "none"),
        ("ranker", "treatment"),
    }
    assert arms["sessions"].sum() == sim.sessions
    with pytest.raises(UnknownReportError, match="valid"):
        run_report(engine.store, "nope")
    df = engine.store.query("SELECT answer, weight FROM wb_answers WHERE status = 'answered'")
    w = df["weight"].to_numpy()
    assert ipw_mean(df["answer"].to_numpy(), 1.0 / w) == pytest.approx(
        float((df["answer"].to_numpy() * w).sum() / w.sum())
    )

    out = render_report(engine.store, tmp_path / "report.html")
    page = out.read_text()
    assert page.count("<svg") >= len(REPORTS)
    for r in REPORTS.values():
        assert r.title in page
    assert "calibration" in page


def test_long_term_head_is_fitted_on_six_month_answers_and_served(engine: Any) -> None:
    """The surrogate: six-month answers planted to follow the mix a person watched (their mean
    completion rate) are learned from the weeks before each answer, reported on held-out
    people, and served: the long-term head lifts clips that push the mix that way."""
    from ranking.pipeline import FeedQuery
    from wellbeing.satisfaction import load_sessions, session_features
    from wellbeing.scorers.satisfaction_head import LongTermHeadScorer

    svc = engine.wellbeing
    feats = session_features(load_sessions(engine.store), engine.state, svc.intensity)
    per_user = feats.group_by("user_id").agg(
        pl.col("completion_rate").mean().alias("mix"), pl.col("session_end").max().alias("end")
    )
    mix = per_user["mix"].to_numpy()
    z = (mix - mix.mean()) / (mix.std() or 1.0)
    answers = np.clip(np.round(3.0 + 1.2 * z), 1, 5).astype(int)
    with engine.store.write() as cur:
        for (uid, _, end), a in zip(per_user.iter_rows(), answers, strict=True):
            cur.execute(
                "INSERT INTO survey_prompts (survey_id, user_id, question_key, kind, stratum, "
                "shown_at, page_probability, question_probability, inclusion_probability, "
                "status, answer) VALUES (?, ?, 'life_better_6m', 'periodic', 's', ?, 1, 1, 1, "
                "'answered', ?)",
                [f"lt-{uid}", uid, end + np.timedelta64(1, "h"), int(a)],
            )
    report = run_job("satisfaction", JobContext(engine))
    assert report.ok, report.message
    lt = report.counts["long_term"]
    assert lt["answers"] == per_user.height >= 20, lt
    # The planted effect is found on held-out people (a constant scores R^2 <= 0; the answers
    # follow the mix over all sessions, the surrogate sees the eight weeks before each).
    assert lt["heldout"]["r2"] > 0.1, lt
    model = svc.satisfaction.long_term
    assert model is not None and model.version == lt["model_version"]
    assert model.version.startswith("lts-")
    assert model.coefficients()["completion_rate"] > 0
    # The in-the-moment head is a different model (none fitted here: no session answers).
    assert svc.satisfaction.model is None or not svc.satisfaction.model.version.startswith("lts")

    scorer = LongTermHeadScorer(svc.satisfaction, weight=1.0)
    cands = pl.DataFrame(
        {
            "item_id": [1, 2, 3],
            "score": [1.0, 1.0, 1.1],
            "completion_rate": [0.2, 0.9, 0.5],
        }
    )
    query = FeedQuery(user_id=1, limit=3, now=datetime.now(UTC), session_id="s")
    out = scorer.score(query, cands)
    assert out[1] > out[0], out  # the clip that moves the mix toward satisfaction rises
    off = LongTermHeadScorer(svc.satisfaction, weight=0.0).score(query, cands)
    np.testing.assert_allclose(off, cands["score"].to_numpy())
