"""A population simulator with long-term dynamics ("chocolate" and "kale" clips).

In the spirit of RecSim's chocolate/kale environment: every clip has a latent **kale-ness**
``k`` the ranking never sees. Chocolate (``k < 0``) is pleasant now (clicked and watched more)
and corrodes a person's long-term satisfaction over weeks and raises regret; kale (``k > 0``)
is less engaging now and raises it. ``k`` is correlated with the clip's *observable* features
(topic, intensity, whether it is social, whether it teaches something), so a model fitted on
observable features can learn it back, which is what the surrogate does
(:mod:`pipelines.offline.longterm_eval`).

Every person carries latent state the policy never sees:

- ``sat``: long-term satisfaction, drifting week by week (kale raises it, chocolate lowers it,
  progress toward a goal raises it, late-night viewing lowers it, a pull back to the person's
  baseline);
- ``habit``: builds with pleasant (appealing) viewing, decays otherwise; it drives how often the
  person comes back (engagement);
- tastes per topic, a compulsivity (how much intensity pulls their watch time), a goal topic
  (half have one; three in five of those have stated it, which is observable).

Observed per session: the clips watched and minutes, whether it was regretted, whether it
started late at night, an in-the-moment answer (asked on a sample; answered with a propensity
that rises with ``sat``: who answers is biased). At week 26 the six-month question "is your life
better" is asked of everyone still around, answered with the same kind of bias, noisy.

Everything is vectorised over people, sessions and slate slots (numpy), so a 300-person,
26-week run takes a fraction of a second.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
B = NDArray[np.bool_]

N_TOPICS = 8
#: Observable clip features, in the order of :attr:`Clips.features`' columns.
FEATURE_NAMES: tuple[str, ...] = (
    *(f"topic_{i}" for i in range(N_TOPICS)),
    "intensity",
    "social",
    "teaches",
    "length_min",
)


class LongtermConfig(BaseModel):
    """Size and parameters of one simulated cohort (defaults are the documented user model)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_people: int = Field(default=300, ge=10)
    n_clips: int = Field(default=400, ge=50)
    weeks: int = Field(default=26, ge=4)
    session_slots: int = Field(default=4, ge=1, description="possible sessions a week")
    slate: int = Field(default=8, ge=1, description="clips shown per session")
    #: Weekly pull of satisfaction per unit of minute-weighted kale-ness watched.
    kale_effect: float = 0.05
    #: Weekly pull toward goal when a person watches their goal's topic.
    goal_effect: float = 0.05
    #: Weekly loss per late-night session share.
    late_effect: float = 0.06
    #: Weekly reversion of satisfaction toward the person's baseline.
    reversion: float = 0.06
    sat_noise: float = 0.04
    survey_rate: float = Field(default=0.3, ge=0.0, le=1.0, description="sessions with a card")
    answer_noise: float = 0.8


@dataclass(frozen=True)
class Clips:
    """A catalogue: observable features and the latent truth the policy never sees."""

    features: F64  # (n_clips, len(FEATURE_NAMES))
    topic: I64
    intensity: F64
    length: F64
    kale: F64  # latent
    appeal: F64  # latent base appeal (now)


@dataclass(frozen=True)
class People:
    """A cohort's latent and observable traits at week 0."""

    sat0: F64
    taste: F64  # (n, N_TOPICS)
    compulsivity: F64
    goal: I64  # topic or -1
    goal_stated: B


@dataclass(frozen=True)
class Trajectory:
    """What one cohort did and felt over the weeks under one policy.

    Observable per week and person: ``active``, ``sessions``, ``minutes``, ``regret``,
    ``late``, the in-the-moment answers (``answer_sum``/``answer_n``), the minute-weighted mix
    of clip features (``mix``) and minutes toward a stated goal (``goal_minutes``); per session,
    the mean clip features and observed outcomes (for the session-level models). Latent:
    ``sat`` per week, the final satisfaction and the expected six-month answer.
    """

    active: B  # (n, weeks)
    sessions: I64
    minutes: F64
    regret: I64
    late: I64
    answer_sum: F64
    answer_n: I64
    mix: F64  # (n, weeks, n_features) minute-weighted sums
    goal_minutes: F64
    sat: F64  # (n, weeks + 1) latent
    six_month_true: F64  # expected answer (1-5) for everyone, latent
    six_month_answer: F64  # observed answer, NaN for non-respondents
    session_x: F64  # (m, n_features) mean clip features of sessions with a card answered
    session_answer: F64
    session_regret_x: F64  # (r, n_features) every session
    session_regret: F64

    @property
    def retention(self) -> F64:
        """Share of the last six weeks each person was active (long-run retention)."""
        return np.asarray(self.active[:, -6:].mean(axis=1), dtype=np.float64)


#: A policy: (week, clips, people) -> scores (n_people, n_clips); higher is shown first.
Policy = Callable[[int, Clips, People], F64]


def _sigmoid(x: F64) -> F64:
    return 1.0 / (1.0 + np.exp(-x))


def make_clips(rng: np.random.Generator, n: int) -> Clips:
    """Draw a catalogue whose latent kale-ness is correlated with its observable features."""
    topic = rng.integers(0, N_TOPICS, n)
    intensity = rng.beta(2.0, 2.0, n)
    social = (rng.random(n) < 0.25).astype(np.float64)
    teaches = (rng.random(n) < 0.2).astype(np.float64)
    length = rng.uniform(0.3, 3.0, n)
    # Topics differ in how nourishing and how pleasant they are (e.g. outrage vs how-to).
    topic_kale = np.linspace(-0.6, 0.6, N_TOPICS)
    topic_appeal = -0.5 * topic_kale + rng.normal(0.0, 0.15, N_TOPICS)
    kale = (
        -1.6 * (intensity - 0.5)
        + 0.8 * social
        + 0.7 * teaches
        + topic_kale[topic]
        + rng.normal(0.0, 0.45, n)
    )
    appeal = 1.6 * (intensity - 0.5) - 0.3 * teaches + topic_appeal[topic] + rng.normal(0, 0.4, n)
    feats = np.zeros((n, len(FEATURE_NAMES)))
    feats[np.arange(n), topic] = 1.0
    feats[:, N_TOPICS] = intensity
    feats[:, N_TOPICS + 1] = social
    feats[:, N_TOPICS + 2] = teaches
    feats[:, N_TOPICS + 3] = length
    return Clips(feats, topic, intensity, length, kale, appeal)


def make_people(rng: np.random.Generator, n: int) -> People:
    """Draw a cohort: baselines, tastes, compulsivity, goals (half; 60% of those stated)."""
    has_goal = rng.random(n) < 0.5
    goal = np.where(has_goal, rng.integers(0, N_TOPICS, n), -1)
    return People(
        sat0=rng.normal(0.0, 0.5, n),
        taste=rng.normal(0.0, 0.5, (n, N_TOPICS)),
        compulsivity=rng.gamma(2.0, 0.5, n),
        goal=goal.astype(np.int64),
        goal_stated=has_goal & (rng.random(n) < 0.6),
    )


def person_appeal(clips: Clips, people: People) -> F64:
    """Latent appeal (now) of every clip to every person: (n_people, n_clips)."""
    return (
        clips.appeal[None, :]
        + people.taste[:, clips.topic]
        + 0.8 * people.compulsivity[:, None] * (clips.intensity[None, :] - 0.5)
    )


def expected_minutes(clips: Clips, people: People) -> F64:
    """Expected minutes a person watches of a clip shown to them (the engagement objective).

    The engagement policy is handed this exactly (a perfect engagement model), which flatters
    the engagement arm rather than the wellbeing arms.
    """
    a = person_appeal(clips, people)
    return _sigmoid(a + 0.5) * clips.length[None, :] * _sigmoid(a + 1.0)


def simulate(
    config: LongtermConfig,
    clips: Clips,
    people: People,
    policy: Policy,
    rng: np.random.Generator,
    *,
    explore: float = 0.3,
) -> Trajectory:
    """Run one cohort for ``config.weeks`` weeks under ``policy``.

    Each week every active person has up to ``session_slots`` sessions; each session shows the
    top ``slate`` clips of the policy's scores perturbed by Gumbel noise of scale ``explore``
    (variety between sessions; a large value is an exploring logging policy).
    """
    n, c, w = config.n_people, config.n_clips, config.weeks
    s_slots, k = config.session_slots, config.slate
    nf = len(FEATURE_NAMES)
    appeal = person_appeal(clips, people)
    goal_hit = (people.goal[:, None] == clips.topic[None, :]) & (people.goal[:, None] >= 0)
    sat = people.sat0.copy()
    habit = np.zeros(n)
    out_active = np.zeros((n, w), dtype=np.bool_)
    out_sessions = np.zeros((n, w), dtype=np.int64)
    out_minutes = np.zeros((n, w))
    out_regret = np.zeros((n, w), dtype=np.int64)
    out_late = np.zeros((n, w), dtype=np.int64)
    out_ans_sum = np.zeros((n, w))
    out_ans_n = np.zeros((n, w), dtype=np.int64)
    out_mix = np.zeros((n, w, nf))
    out_goal = np.zeros((n, w))
    out_sat = np.zeros((n, w + 1))
    out_sat[:, 0] = sat
    sx: list[F64] = []
    sa: list[F64] = []
    rx: list[F64] = []
    rr: list[F64] = []
    rows = np.arange(n)[:, None, None]
    for week in range(w):
        scores = policy(week, clips, people)
        active = rng.random(n) < _sigmoid(1.2 + 0.9 * sat + 0.8 * habit)
        n_sess = rng.binomial(s_slots, _sigmoid(-0.2 + 0.8 * habit + 0.2 * sat))
        slot_on = (np.arange(s_slots)[None, :] < n_sess[:, None]) & active[:, None]
        noisy = scores[:, None, :] + explore * rng.gumbel(size=(n, s_slots, c))
        shown = np.argpartition(-noisy, k, axis=2)[:, :, :k]  # (n, S, k)
        a = appeal[rows, shown]  # (n, S, k)
        watched = rng.random((n, s_slots, k)) < _sigmoid(a + 0.5)
        mins = np.where(watched, clips.length[shown] * _sigmoid(a + 1.0), 0.0)
        mins *= slot_on[:, :, None]
        sess_min = mins.sum(axis=2)
        wsum = np.maximum(sess_min, 1e-9)
        kale_s = (mins * clips.kale[shown]).sum(axis=2) / wsum
        appeal_s = (mins * a).sum(axis=2) / wsum
        inten_s = (mins * clips.intensity[shown]).sum(axis=2) / wsum
        late = slot_on & (
            rng.random((n, s_slots))
            < _sigmoid(-2.0 + 0.6 * people.compulsivity[:, None] + 0.8 * habit[:, None])
        )
        regret = slot_on & (
            rng.random((n, s_slots))
            < _sigmoid(
                -1.2
                - 1.2 * kale_s
                + 0.7 * late
                + 0.5 * people.compulsivity[:, None] * (inten_s - 0.5)
            )
        )
        # In-the-moment answers follow how pleasant the session was more than what it did.
        asked = slot_on & (rng.random((n, s_slots)) < config.survey_rate)
        answered = asked & (rng.random((n, s_slots)) < _sigmoid(-0.3 + 0.9 * sat[:, None]))
        ans = np.clip(
            np.rint(
                3.0
                + 0.7 * appeal_s
                + 0.15 * kale_s
                + 0.3 * sat[:, None]
                - 0.6 * regret
                + config.answer_noise * rng.standard_normal((n, s_slots))
            ),
            1,
            5,
        )
        # Session-level mean features (for the in-the-moment head and the regret model).
        feat_sum = np.einsum("nsk,nskf->nsf", mins, clips.features[shown])
        sess_x = feat_sum / wsum[:, :, None]
        has_view = slot_on & (sess_min > 0)
        sx.append(sess_x[answered & has_view])
        sa.append(ans[answered & has_view])
        rx.append(sess_x[has_view])
        rr.append(regret[has_view].astype(np.float64))
        # Weekly outcomes.
        minutes = sess_min.sum(axis=1)
        kale_w = (mins * clips.kale[shown]).sum(axis=(1, 2))
        goal_w = (mins * goal_hit[rows, shown]).sum(axis=(1, 2))
        appeal_w = (mins * a).sum(axis=(1, 2))
        late_share = late.sum(axis=1) / np.maximum(slot_on.sum(axis=1), 1)
        out_active[:, week] = active
        out_sessions[:, week] = slot_on.sum(axis=1)
        out_minutes[:, week] = minutes
        out_regret[:, week] = regret.sum(axis=1)
        out_late[:, week] = late.sum(axis=1)
        out_ans_sum[:, week] = np.where(answered, ans, 0.0).sum(axis=1)
        out_ans_n[:, week] = answered.sum(axis=1)
        out_mix[:, week, :] = feat_sum.sum(axis=1)
        out_goal[:, week] = goal_w * people.goal_stated
        # Long-term satisfaction drifts: kale and goals raise it, chocolate and nights lower it.
        hours_scale = np.minimum(minutes / 20.0, 1.5)
        sat = (
            sat
            + config.kale_effect * hours_scale * (kale_w / np.maximum(minutes, 1e-9))
            + config.goal_effect * np.minimum(goal_w / 10.0, 1.0)
            - config.late_effect * late_share
            + config.reversion * (people.sat0 - sat)
            + config.sat_noise * rng.standard_normal(n)
        )
        # Habit follows pleasant minutes (what engagement buys), and fades without them.
        habit = 0.7 * habit + 0.3 * np.tanh(np.maximum(appeal_w, 0.0) / 15.0) * 2.0
        out_sat[:, week + 1] = sat
    six_true = np.clip(3.0 + 1.2 * sat, 1.0, 5.0)
    responds = rng.random(n) < _sigmoid(0.2 + 0.9 * sat + 1.0 * out_active[:, -4:].mean(axis=1))
    obs = np.clip(np.rint(six_true + config.answer_noise * rng.standard_normal(n)), 1, 5)
    six_obs = np.where(responds, obs, np.nan)
    return Trajectory(
        active=out_active,
        sessions=out_sessions,
        minutes=out_minutes,
        regret=out_regret,
        late=out_late,
        answer_sum=out_ans_sum,
        answer_n=out_ans_n,
        mix=out_mix,
        goal_minutes=out_goal,
        sat=out_sat,
        six_month_true=six_true,
        six_month_answer=six_obs,
        session_x=np.concatenate(sx) if sx else np.zeros((0, nf)),
        session_answer=np.concatenate(sa) if sa else np.zeros(0),
        session_regret_x=np.concatenate(rx) if rx else np.zeros((0, nf)),
        session_regret=np.concatenate(rr) if rr else np.zeros(0),
    )
