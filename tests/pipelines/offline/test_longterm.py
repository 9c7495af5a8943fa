"""The long-term simulator's dynamics, the surrogate against trivial baselines, and the eval's
report shape (tiny configurations)."""

from __future__ import annotations

import functools

import numpy as np

from pipelines.offline.longterm_eval import (
    ARMS,
    LongtermEvalConfig,
    evaluate_longterm,
    fit_ridge,
    fit_surrogate,
    logging_policy,
    short_term_features,
)
from pipelines.offline.longterm_simulator import (
    F64,
    Clips,
    LongtermConfig,
    People,
    Policy,
    make_clips,
    make_people,
    simulate,
)


def _by_kale(sign: float) -> Policy:
    """Show the most chocolate (sign -1) or the most kale (sign +1) first (uses the latent)."""

    def policy(week: int, clips: Clips, people: People) -> F64:
        return np.tile(sign * clips.kale, (len(people.sat0), 1))

    return policy


def test_chocolate_engages_now_and_corrodes_while_kale_does_the_reverse() -> None:
    config = LongtermConfig(n_people=150, n_clips=200, weeks=12)
    gaps_minutes, gaps_sat, gaps_regret = [], [], []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        clips = make_clips(rng, config.n_clips)
        people = make_people(rng, config.n_people)
        choc = simulate(config, clips, people, _by_kale(-1.0), np.random.default_rng(seed + 10))
        kale = simulate(config, clips, people, _by_kale(1.0), np.random.default_rng(seed + 10))
        # The first week, before satisfaction or habit moved: chocolate is watched more.
        gaps_minutes.append(choc.minutes[:, 0].mean() - kale.minutes[:, 0].mean())
        gaps_sat.append(choc.sat[:, -1].mean() - kale.sat[:, -1].mean())
        gaps_regret.append(
            choc.regret.sum() / choc.sessions.sum() - kale.regret.sum() / kale.sessions.sum()
        )
        # Chocolate lowers satisfaction from where people started; kale raises it.
        assert choc.sat[:, -1].mean() < choc.sat[:, 0].mean()
        assert kale.sat[:, -1].mean() > kale.sat[:, 0].mean()
    assert all(g > 0 for g in gaps_minutes)
    assert all(g < 0 for g in gaps_sat)
    assert all(g > 0 for g in gaps_regret)


def test_the_policy_never_sees_kale_but_observable_features_predict_it() -> None:
    rng = np.random.default_rng(0)
    clips = make_clips(rng, 2000)
    half = 1000
    model = fit_ridge(clips.features[:half], clips.kale[:half])
    pred = model.predict(clips.features[half:])
    assert np.corrcoef(pred, clips.kale[half:])[0, 1] > 0.6
    # Pleasant now and nourishing are at odds: appeal and kale-ness are negatively correlated.
    assert np.corrcoef(clips.appeal, clips.kale)[0, 1] < -0.2


def test_surrogate_beats_a_constant_on_held_out_cohorts() -> None:
    config = LongtermConfig()
    rng = np.random.default_rng(3)
    clips = make_clips(rng, config.n_clips)
    tilted = functools.partial(logging_policy, clips, rng=rng)

    cohorts = []
    for _ in range(2):
        people = make_people(rng, config.n_people)
        cohorts.append((simulate(config, clips, people, tilted(people), rng), people))
    surrogate = fit_surrogate(cohorts, weeks=6, alpha=1.0)
    hold_people = make_people(rng, config.n_people)
    hold = simulate(config, clips, hold_people, tilted(hold_people), rng)
    pred = surrogate.six_month.predict(short_term_features(hold, hold_people, 6))
    truth = hold.six_month_true
    train_mean = np.nanmean(np.concatenate([t.six_month_answer for t, _ in cohorts]))
    mse = float(((truth - pred) ** 2).mean())
    mse_constant = float(((truth - train_mean) ** 2).mean())
    assert mse < 0.95 * mse_constant
    assert np.corrcoef(pred, truth)[0, 1] > 0.3
    # Its per-clip credit ranks nourishing clips up.
    assert np.corrcoef(surrogate.clip_credit(clips), clips.kale)[0, 1] > 0.3


def test_eval_runs_for_a_tiny_config_and_returns_the_report_shape() -> None:
    config = LongtermEvalConfig(
        seeds=2,
        sim=LongtermConfig(n_people=40, n_clips=80, weeks=8),
        surrogate_weeks=3,
    )
    report = evaluate_longterm(config)
    assert set(report["arms"]) == set(ARMS)
    for arm in ARMS:
        for metric in ("six_month", "minutes_per_week", "retention", "regret_share"):
            cell = report["arms"][arm][metric]
            assert set(cell) == {"mean", "lo", "hi"}
            assert cell["lo"] <= cell["mean"] <= cell["hi"]
    assert set(report["difference_vs_engagement"]) == set(ARMS[1:])
    for key in ("r2", "spearman", "slope", "r2_constant", "retention_r2"):
        assert key in report["surrogate_validation_held_out"]
    assert "spearman_surrogate_vs_engagement" in report["clip_ranking"]
    assert len(report["per_seed"]) == 2
    assert set(report["verdict"]) >= {"wellbeing_beats_engagement_on_six_month"}
