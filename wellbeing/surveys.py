"""Wellbeing survey questions and the randomised policy that decides when to ask them.

Each feed page is a Bernoulli draw: with probability :func:`page_probability` the page carries a
survey card. The probability is set so that a user's expected number of surveys per week equals
the policy's target for their activity stratum, given the pages they are expected to load that
week and the minimum spacing between two surveys (pages inside the spacing window cannot draw,
so the per-page rate is raised to make up for them). Every draw carries its inclusion
probability, to be stored with the answer so that analyses can reweight (see
:mod:`wellbeing.propensity`).

Answer scales: every question is answered on a 1-5 scale (``well_spent`` too, rather than
yes/no), so all four can be averaged and compared with the same estimators.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from wellbeing.errors import SurveyError
from wellbeing.governor import to_utc

logger = logging.getLogger(__name__)

QuestionKind = Literal["in_moment", "periodic"]
Stratum = Literal["light", "medium", "heavy"]
STRATA: tuple[Stratum, ...] = ("light", "medium", "heavy")
HOURS_PER_WEEK = 168.0


@dataclass(frozen=True, slots=True)
class SurveyQuestion:
    """One survey question and its answer scale.

    Attributes
    ----------
    key
        Stable identifier stored with answers.
    text
        What the user reads.
    kind
        ``'in_moment'`` (about the session just had) or ``'periodic'`` (looking back).
    scale_min, scale_max
        The inclusive integer answer scale.
    labels
        Words shown for some scale points.
    period_days
        For periodic questions, the least number of days between two askings.
    """

    key: str
    text: str
    kind: QuestionKind
    scale_min: int
    scale_max: int
    labels: Mapping[int, str]
    period_days: int | None = None

    def validate_answer(self, value: int) -> int:
        """Return ``value`` when it is on this question's scale, else raise :class:`SurveyError`."""
        if isinstance(value, bool) or not isinstance(value, int):
            msg = f"answer to {self.key!r} must be an integer, got {value!r}"
            raise SurveyError(msg)
        if not self.scale_min <= value <= self.scale_max:
            msg = (
                f"answer to {self.key!r} must be in {self.scale_min}..{self.scale_max}, got {value}"
            )
            raise SurveyError(msg)
        return value


_BETTER_WORSE = {
    1: "Much worse",
    2: "A bit worse",
    3: "No different",
    4: "A bit better",
    5: "Much better",
}

QUESTIONS: Mapping[str, SurveyQuestion] = {
    q.key: q
    for q in (
        SurveyQuestion(
            key="session_feel",
            text="How do you feel after this session?",
            kind="in_moment",
            scale_min=1,
            scale_max=5,
            labels={1: "Much worse", 3: "About the same", 5: "Much better"},
        ),
        SurveyQuestion(
            key="well_spent",
            text="Was this time well spent?",
            kind="in_moment",
            scale_min=1,
            scale_max=5,
            labels={1: "Not at all", 3: "Somewhat", 5: "Completely"},
        ),
        SurveyQuestion(
            key="life_better_month",
            text="Looking back over the past month, is your life better for using this?",
            kind="periodic",
            scale_min=1,
            scale_max=5,
            labels=_BETTER_WORSE,
            period_days=30,
        ),
        SurveyQuestion(
            key="life_better_6m",
            text="Looking back over the past six months, is your life better for using this?",
            kind="periodic",
            scale_min=1,
            scale_max=5,
            labels=_BETTER_WORSE,
            period_days=180,
        ),
    )
}


def validate_answer(question_key: str, value: int) -> int:
    """Check an answer against its question's scale; unknown keys raise :class:`SurveyError`."""
    return get_question(question_key).validate_answer(value)


def get_question(question_key: str) -> SurveyQuestion:
    """Return the question ``question_key`` or raise :class:`SurveyError` listing valid keys."""
    try:
        return QUESTIONS[question_key]
    except KeyError:
        msg = f"unknown survey question {question_key!r}; valid: {', '.join(QUESTIONS)}"
        raise SurveyError(msg) from None


class UniformSource(Protocol):
    """Anything with ``random() -> float`` in ``[0, 1)``: ``random.Random``, numpy ``Generator``."""

    def random(self) -> float:
        """Return the next uniform draw in ``[0, 1)``."""
        ...


class SamplingPolicy(BaseModel):
    """How often to ask, whom, and which questions.

    Parameters
    ----------
    rate_per_week
        Target expected surveys per user per week (before the stratum multiplier).
    min_spacing_hours
        Least time between two surveys to the same user; never violated.
    light_max_minutes_week
        Users with fewer weekly minutes than this are ``'light'``.
    heavy_min_minutes_week
        Users with at least this many weekly minutes are ``'heavy'``; the rest ``'medium'``.
    stratum_multipliers
        Rate multiplier per stratum (missing strata get 1.0), e.g. to oversample light users.
    in_moment_questions
        Questions drawn uniformly when no periodic question is due.
    periodic_questions
        Periodic questions, in order of precedence when several are due.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_per_week: float = Field(default=1.0, gt=0.0, le=100.0)
    min_spacing_hours: float = Field(default=24.0, ge=0.0)
    light_max_minutes_week: float = Field(default=60.0, ge=0.0)
    heavy_min_minutes_week: float = Field(default=420.0, gt=0.0)
    stratum_multipliers: dict[Stratum, float] = Field(
        default_factory=lambda: dict.fromkeys(STRATA, 1.0)
    )
    in_moment_questions: tuple[str, ...] = ("session_feel", "well_spent")
    periodic_questions: tuple[str, ...] = ("life_better_6m", "life_better_month")

    @field_validator("stratum_multipliers")
    @classmethod
    def _all_strata_positive(cls, value: dict[Stratum, float]) -> dict[Stratum, float]:
        bad = {k: v for k, v in value.items() if not v > 0}
        if bad:
            msg = f"stratum multipliers must be > 0, got {bad}"
            raise ValueError(msg)
        return {s: float(value.get(s, 1.0)) for s in STRATA}

    @field_validator("in_moment_questions", "periodic_questions")
    @classmethod
    def _known_questions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [k for k in value if k not in QUESTIONS]
        if unknown:
            msg = f"unknown survey question(s) {unknown}; valid: {', '.join(QUESTIONS)}"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SamplingPolicy:
        if self.heavy_min_minutes_week <= self.light_max_minutes_week:
            msg = (
                f"heavy_min_minutes_week ({self.heavy_min_minutes_week}) must exceed "
                f"light_max_minutes_week ({self.light_max_minutes_week})"
            )
            raise ValueError(msg)
        if not self.in_moment_questions:
            msg = "in_moment_questions must name at least one question"
            raise ValueError(msg)
        wrong = [k for k in self.in_moment_questions if QUESTIONS[k].kind != "in_moment"]
        wrong += [k for k in self.periodic_questions if QUESTIONS[k].kind != "periodic"]
        if wrong:
            msg = f"question(s) {wrong} listed under the wrong kind"
            raise ValueError(msg)
        busiest = self.rate_per_week * max(self.stratum_multipliers.values())
        if busiest * self.min_spacing_hours >= HOURS_PER_WEEK:
            fit = HOURS_PER_WEEK / self.min_spacing_hours
            msg = (
                f"a rate of {busiest:g} surveys per week cannot hold with "
                f"{self.min_spacing_hours:g} hours between surveys (at most {fit:.2f} fit in a "
                "week, and the rate must stay below that)"
            )
            raise ValueError(msg)
        return self


@dataclass(frozen=True, slots=True)
class SurveyDraw:
    """A survey card to show on this page, with the probabilities to store with the answer.

    Attributes
    ----------
    user_id
        Who is asked.
    question_key
        Which question (a key of :data:`QUESTIONS`).
    kind
        The question's kind.
    stratum
        The user's activity stratum when drawn.
    page_probability
        Probability that this page drew a survey.
    question_probability
        Probability of this question given that a survey was drawn (1 for a due periodic one).
    inclusion_probability
        ``page_probability * question_probability``: weight answers by its inverse.
    drawn_at
        The draw's time (aware UTC).
    """

    user_id: int
    question_key: str
    kind: QuestionKind
    stratum: Stratum
    page_probability: float
    question_probability: float
    inclusion_probability: float
    drawn_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (``drawn_at`` as ISO-8601)."""
        out = asdict(self)
        out["drawn_at"] = self.drawn_at.isoformat()
        return out


def stratum_for(policy: SamplingPolicy, activity_minutes_week: float) -> Stratum:
    """Return ``'light'``, ``'medium'`` or ``'heavy'`` for a user's weekly minutes."""
    if activity_minutes_week < policy.light_max_minutes_week:
        return "light"
    if activity_minutes_week >= policy.heavy_min_minutes_week:
        return "heavy"
    return "medium"


def target_rate(policy: SamplingPolicy, activity_minutes_week: float) -> float:
    """Expected surveys per week for a user of this activity (rate times stratum multiplier)."""
    return (
        policy.rate_per_week
        * policy.stratum_multipliers[stratum_for(policy, activity_minutes_week)]
    )


def page_probability(
    policy: SamplingPolicy, *, activity_minutes_week: float, pages_this_week_expected: float
) -> float:
    """Per-page survey probability that yields the target weekly rate.

    With target rate ``r`` per week and a spacing of ``d`` weeks during which no draw may
    happen, eligible pages must draw at ``lam = r / (1 - r * d)`` per week (a renewal process with
    dead time gives ``lam / (1 + lam * d) = r``); spread over ``pages_this_week_expected`` pages
    that is ``lam / pages`` per page, capped at 1 (a user loading too few pages cannot reach the
    target).
    """
    rate = target_rate(policy, activity_minutes_week)
    dead_weeks = policy.min_spacing_hours / HOURS_PER_WEEK
    per_week = rate / (1.0 - rate * dead_weeks)
    pages = max(float(pages_this_week_expected), 1.0)
    return min(1.0, per_week / pages)


def should_survey(
    policy: SamplingPolicy,
    *,
    user_id: int,
    now_utc: datetime,
    last_survey_at: datetime | None,
    last_periodic_at: Mapping[str, datetime],
    activity_minutes_week: float,
    pages_this_week_expected: float,
    rng: UniformSource,
    tenure_days: float | None = None,
) -> SurveyDraw | None:
    """Decide whether this page carries a survey, and which question.

    Parameters
    ----------
    policy
        The sampling policy.
    user_id
        The user loading the page.
    now_utc
        Server time of the page (naive values are UTC).
    last_survey_at
        When this user was last shown any survey, or ``None``.
    last_periodic_at
        When each periodic question was last shown to this user (missing: never).
    activity_minutes_week
        The user's minutes in the past week (sets the stratum).
    pages_this_week_expected
        Pages the user is expected to load this week (e.g. last week's count).
    rng
        The random source (``random.Random`` or a numpy ``Generator``).
    tenure_days
        Account age; when given, a periodic question is only asked once the account is at
        least as old as its period (no "past six months" for a new account).

    Returns
    -------
    SurveyDraw or None
        ``None`` within ``min_spacing_hours`` of the last survey or when the draw fails. When a
        periodic question is due it is asked (first due in ``policy.periodic_questions`` order);
        otherwise an in-the-moment question is drawn uniformly.
    """
    now = to_utc(now_utc)
    if last_survey_at is not None and now - to_utc(last_survey_at) < timedelta(
        hours=policy.min_spacing_hours
    ):
        return None
    p_page = page_probability(
        policy,
        activity_minutes_week=activity_minutes_week,
        pages_this_week_expected=pages_this_week_expected,
    )
    if rng.random() >= p_page:
        return None
    key, p_question = _pick_question(policy, now, last_periodic_at, tenure_days, rng)
    draw = SurveyDraw(
        user_id=user_id,
        question_key=key,
        kind=QUESTIONS[key].kind,
        stratum=stratum_for(policy, activity_minutes_week),
        page_probability=p_page,
        question_probability=p_question,
        inclusion_probability=p_page * p_question,
        drawn_at=now,
    )
    logger.info(
        "survey drawn question=%s stratum=%s p_page=%.5f p_incl=%.5f",
        key,
        draw.stratum,
        p_page,
        draw.inclusion_probability,
    )
    return draw


def _pick_question(
    policy: SamplingPolicy,
    now: datetime,
    last_periodic_at: Mapping[str, datetime],
    tenure_days: float | None,
    rng: UniformSource,
) -> tuple[str, float]:
    for key in policy.periodic_questions:
        period = QUESTIONS[key].period_days or 0
        if tenure_days is not None and tenure_days < period:
            continue
        last = last_periodic_at.get(key)
        if last is None or now - to_utc(last) >= timedelta(days=period):
            return key, 1.0
    choices = policy.in_moment_questions
    index = min(int(rng.random() * len(choices)), len(choices) - 1)
    return choices[index], 1.0 / len(choices)
