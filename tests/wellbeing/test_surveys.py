"""Survey questions, the randomised sampling policy, and propensity-weighted estimates."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from wellbeing.errors import PropensityModelError, SurveyError
from wellbeing.propensity import PROPENSITY_FEATURES, ResponsePropensityModel, ipw_mean
from wellbeing.surveys import (
    QUESTIONS,
    SamplingPolicy,
    page_probability,
    should_survey,
    stratum_for,
    target_rate,
    validate_answer,
)

T0 = datetime(2026, 1, 5, tzinfo=UTC)


class AlwaysDraw:
    """A random source whose draws always succeed."""

    def random(self) -> float:
        return 0.0


# -- questions --------------------------------------------------------------------------------


def test_question_bank_has_the_four_questions_on_a_one_to_five_scale() -> None:
    assert set(QUESTIONS) == {"session_feel", "well_spent", "life_better_month", "life_better_6m"}
    assert QUESTIONS["session_feel"].text == "How do you feel after this session?"
    assert QUESTIONS["well_spent"].text == "Was this time well spent?"
    assert QUESTIONS["life_better_month"].period_days == 30
    assert QUESTIONS["life_better_6m"].period_days == 180
    assert all((q.scale_min, q.scale_max) == (1, 5) for q in QUESTIONS.values())
    assert validate_answer("well_spent", 4) == 4
    with pytest.raises(SurveyError, match=r"1\.\.5"):
        validate_answer("well_spent", 0)
    with pytest.raises(SurveyError, match="valid: session_feel"):
        validate_answer("fun", 3)


# -- the policy -------------------------------------------------------------------------------


def test_policy_rejects_impossible_or_unknown_settings() -> None:
    with pytest.raises(ValidationError, match="cannot hold"):
        SamplingPolicy(rate_per_week=7.0, min_spacing_hours=24.0)
    with pytest.raises(ValidationError, match="unknown survey question"):
        SamplingPolicy(in_moment_questions=("mood",))
    with pytest.raises(ValidationError, match="wrong kind"):
        SamplingPolicy(in_moment_questions=("life_better_month",))
    with pytest.raises(ValidationError, match="must exceed"):
        SamplingPolicy(light_max_minutes_week=500.0, heavy_min_minutes_week=400.0)
    with pytest.raises(ValidationError, match="extra"):
        SamplingPolicy.model_validate({"rate": 1.0})


def test_strata_and_multipliers() -> None:
    policy = SamplingPolicy(stratum_multipliers={"light": 2.0})
    assert policy.stratum_multipliers == {"light": 2.0, "medium": 1.0, "heavy": 1.0}
    assert [stratum_for(policy, m) for m in (0, 59, 60, 419, 420)] == [
        "light",
        "light",
        "medium",
        "medium",
        "heavy",
    ]
    assert target_rate(policy, 10) == 2.0
    # fewer pages than the target needs: capped at one survey chance per page
    assert page_probability(policy, activity_minutes_week=10, pages_this_week_expected=1) == 1.0


def test_spacing_is_never_violated() -> None:
    policy = SamplingPolicy(min_spacing_hours=24.0)

    def draw_at(now: datetime) -> bool:
        return (
            should_survey(
                policy,
                user_id=1,
                now_utc=now,
                last_survey_at=T0,
                last_periodic_at={},
                activity_minutes_week=100.0,
                pages_this_week_expected=10.0,
                rng=AlwaysDraw(),
            )
            is not None
        )

    assert not draw_at(T0 + timedelta(hours=23, minutes=59))
    assert draw_at(T0 + timedelta(hours=24))


def test_due_periodic_questions_come_first_and_respect_their_period() -> None:
    policy = SamplingPolicy()

    def ask(last_periodic: dict[str, datetime], tenure: float | None) -> tuple[str, float]:
        draw = should_survey(
            policy,
            user_id=9,
            now_utc=T0,
            last_survey_at=None,
            last_periodic_at=last_periodic,
            activity_minutes_week=200.0,
            pages_this_week_expected=40.0,
            rng=AlwaysDraw(),
            tenure_days=tenure,
        )
        assert draw is not None
        assert draw.inclusion_probability == pytest.approx(
            draw.page_probability * draw.question_probability
        )
        return draw.question_key, draw.question_probability

    assert ask({}, 400.0) == ("life_better_6m", 1.0)
    recent_6m = {"life_better_6m": T0 - timedelta(days=10)}
    assert ask(recent_6m, 400.0) == ("life_better_month", 1.0)
    assert ask({**recent_6m, "life_better_month": T0 - timedelta(days=31)}, 400.0)[0] == (
        "life_better_month"
    )
    both_recent = {**recent_6m, "life_better_month": T0 - timedelta(days=29)}
    assert ask(both_recent, 400.0) == ("session_feel", 0.5)
    assert ask({}, 60.0)[0] == "life_better_month"  # too new for "the past six months"
    assert ask({}, 10.0)[1] == 0.5  # too new for either look-back


def test_sampling_rate_holds_over_many_simulated_users() -> None:
    """5,000 users x 4 measured weeks (after a burn-in week), Poisson page arrivals."""
    policy = SamplingPolicy(
        rate_per_week=1.0,
        min_spacing_hours=24.0,
        light_max_minutes_week=100.0,
        heavy_min_minutes_week=300.0,
        stratum_multipliers={"light": 1.5, "medium": 1.0, "heavy": 0.75},
    )
    gen = np.random.default_rng(11)
    rng = random.Random(11)
    week = timedelta(weeks=1)
    burn_in, measured = 1, 4
    n_users = 5_000
    observed: dict[str, float] = {"light": 0.0, "medium": 0.0, "heavy": 0.0}
    expected: dict[str, float] = {"light": 0.0, "medium": 0.0, "heavy": 0.0}
    min_gap = timedelta(weeks=10)
    for user in range(n_users):
        pages_week = float(gen.integers(2, 20))
        minutes = pages_week * 20.0
        n_pages = gen.poisson(pages_week * (burn_in + measured))
        offsets = np.sort(gen.random(n_pages)) * (burn_in + measured)
        last: datetime | None = None
        last_periodic: dict[str, datetime] = {}
        stratum = stratum_for(policy, minutes)
        expected[stratum] += target_rate(policy, minutes) * measured
        for offset in offsets.tolist():
            now = T0 + offset * week
            draw = should_survey(
                policy,
                user_id=user,
                now_utc=now,
                last_survey_at=last,
                last_periodic_at=last_periodic,
                activity_minutes_week=minutes,
                pages_this_week_expected=pages_week,
                rng=rng,
            )
            if draw is None:
                continue
            if last is not None:
                min_gap = min(min_gap, now - last)
            last = now
            if draw.kind == "periodic":
                last_periodic[draw.question_key] = now
            if offset >= burn_in:
                observed[stratum] += 1
    assert min_gap >= timedelta(hours=24)
    total_ratio = sum(observed.values()) / sum(expected.values())
    assert total_ratio == pytest.approx(1.0, abs=0.05)
    for name in observed:
        assert observed[name] / expected[name] == pytest.approx(1.0, abs=0.08), name


# -- response propensity ----------------------------------------------------------------------


def _planted_population(n: int, seed: int) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Users shown a survey; the more satisfied (active, habitual responders) answer more."""
    gen = np.random.default_rng(seed)
    minutes = gen.lognormal(mean=4.5, sigma=1.0, size=n)
    tenure = gen.uniform(1, 700, size=n)
    teen = (gen.random(n) < 0.2).astype(float)
    past_rate = gen.beta(2, 3, size=n)
    z_act = (np.log1p(minutes) - np.log1p(minutes).mean()) / np.log1p(minutes).std()
    satisfaction = 3.0 + 0.6 * z_act + 1.0 * (past_rate - 0.4) - 0.3 * teen + gen.normal(0, 0.7, n)
    logit = -0.6 + 0.9 * z_act + 2.5 * (past_rate - 0.4) - 0.5 * teen
    answered = gen.random(n) < 1.0 / (1.0 + np.exp(-logit))
    frame = pl.DataFrame(
        {
            "activity_minutes_week": minutes,
            "tenure_days": tenure,
            "is_teen": teen.astype(bool),
            "past_response_rate": past_rate,
        }
    )
    return frame, satisfaction, answered


def test_propensity_weighting_recovers_the_true_mean_under_response_bias() -> None:
    features, satisfaction, answered = _planted_population(20_000, seed=5)
    truth = float(satisfaction.mean())
    naive = float(satisfaction[answered].mean())
    assert np.corrcoef(satisfaction, answered)[0, 1] > 0.1  # happier people answer more
    assert naive - truth > 0.2

    model = ResponsePropensityModel().fit(features, answered)
    assert model.coefficients["activity_minutes_week"] > 0
    assert model.coefficients["past_response_rate"] > 0
    responders = features.filter(pl.Series(answered))
    corrected = ipw_mean(satisfaction[answered], model.predict(responders))
    assert abs(corrected - truth) < 0.04
    weights = model.weights(responders)
    assert weights.max() <= 1.0 / model.min_propensity + 1e-9 and weights.min() >= 1.0


def test_ipw_mean_is_the_hajek_estimator() -> None:
    assert ipw_mean([1.0, 3.0], [0.5, 0.5]) == 2.0
    assert ipw_mean([1.0, 3.0], [1.0, 0.25]) == pytest.approx((1 + 3 * 4) / 5)
    with pytest.raises(PropensityModelError, match=r"\(0, 1\]"):
        ipw_mean([1.0], [0.0])
    with pytest.raises(PropensityModelError, match="equal in length"):
        ipw_mean([1.0, 2.0], [0.5])


def test_propensity_model_refuses_misuse() -> None:
    model = ResponsePropensityModel()
    with pytest.raises(PropensityModelError, match="not fitted"):
        model.predict(np.zeros((1, len(PROPENSITY_FEATURES))))
    with pytest.raises(PropensityModelError, match="both answered and unanswered"):
        model.fit(np.ones((4, len(PROPENSITY_FEATURES))), [True] * 4)
    with pytest.raises(PropensityModelError, match="lack column"):
        model.fit(pl.DataFrame({"tenure_days": [1.0, 2.0]}), [True, False])
