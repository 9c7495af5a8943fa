"""A user simulator that runs an A/B experiment against the real feed pipeline for N days.

The simulator builds a demo world (:mod:`pipelines.offline.demo_world`) into a fresh data directory,
fits the wellbeing satisfaction model on simulated survey answers of the world's logged period
(when the wellbeing package is installed, so the satisfaction head has a model), stores the
experiment as running and then lets every user of the world live ``days`` days against
:meth:`~pipelines.serving.engine.Engine.feed` in process: real assignment, real overrides, real
governor and survey cards, impressions logged by the real side effect, the user's events
committed through :meth:`~pipelines.serving.engine.Engine.ingest_events` (so the serving state, the
usage tracker and the governor see them).

Each simulated user carries hidden state the ranking never sees:

- **tastes**: the world's ground truth (:meth:`~pipelines.offline.demo_world.World.true_affinity`);
- **mood**: drawn per session; it tilts taste toward high- or low-energy clips;
- **wellbeing** in ``[0, 1]``: erodes with compulsive, low-value viewing (intense clips of
  low true value watched anyway, late-night viewing, very long sessions) and recovers with
  valued content (high true affinity) and connected content (followed creators, friends);
  it drifts slowly back toward the user's baseline each night;
- **compulsivity**: how much intensity pulls watch time and keeps the user scrolling;
- **fatigue** within a session, which shortens watches and raises the chance to leave;
- **session exits**: after every clip, from fatigue, low value and (less) for compulsive users
  on intense clips; the governor's stop card ends a session too;
- **visits per day**: a Poisson count whose rate follows the user's habit in the logged
  history (so the pre-period predicts it, as CUPED assumes) and rises with wellbeing (unhappy
  users drift away, the long-term cost an engagement-only ranker does not see);
- **survey answers**: an in-the-moment answer follows wellbeing and the session's value, a
  periodic one follows wellbeing; whether a card is answered at all follows a per-user
  **response propensity** that rises with wellbeing (so answers over-state satisfaction).

The report compares the arms on logged metrics (the same analysis as
``steerfeed experiments analyze``) and on the hidden ground truth (wellbeing at the end, its
change, true session satisfaction), each with a confidence interval, plus a daily series per
arm for the dashboard.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from pipelines.experiments.analysis import analyze
from pipelines.experiments.definitions import Experiment, parse_experiment
from pipelines.experiments.stats import Estimate, cuped_diff, diff_in_means
from pipelines.offline.demo import load_world, reset_data_dir
from pipelines.offline.demo_world import World, WorldConfig, build_world
from pipelines.offline.wellbeing_simulate import simulate_surveys
from pipelines.serving.engine import Engine, open_engine
from pipelines.serving.jobs import JobContext, run_job
from pipelines.serving.page import FeedPage
from storage.store import Store
from wellbeing.cards import SurveyCard

logger = logging.getLogger(__name__)

#: The simulated period starts this long after the end of the world's logged period.
_GAP = timedelta(hours=12)


class SimulationConfig(BaseModel):
    """Size and behaviour of a simulation.

    Attributes
    ----------
    days : int
        Simulated days.
    n_users, n_clips, n_events : int
        Size of the demo world (every user of the world is simulated; ``n_events`` is the
        logged history before the experiment, the CUPED pre-period).
    seed : int
        Seed of the world and of every simulated choice.
    page_size : int
        Clips per requested page.
    max_pages : int
        Pages a session may load at most.
    visits_per_day : float
        Mean app opens per user and day at wellbeing 0.6.
    self_limit_share : float
        Share of adults who set themselves a daily time limit (10-24 minutes) before the
        experiment, so the governor (and its taper) acts on them as on teens.
    """

    model_config = ConfigDict(extra="forbid")

    days: int = Field(default=7, ge=1, le=365)
    n_users: int = Field(default=300, ge=20)
    n_clips: int = Field(default=3000, ge=100)
    n_events: int | None = Field(default=None, ge=0)
    seed: int = 0
    page_size: int = Field(default=10, ge=1, le=50)
    max_pages: int = Field(default=8, ge=1, le=50)
    visits_per_day: float = Field(default=1.5, gt=0.0, le=20.0)
    self_limit_share: float = Field(default=0.3, ge=0.0, le=1.0)


@dataclass
class _Users:
    """Hidden state of every simulated user, aligned with ``ids``."""

    ids: np.ndarray
    is_teen: np.ndarray
    timezone: list[str]
    compulsivity: np.ndarray
    baseline: np.ndarray
    wellbeing: np.ndarray
    visit_rate: np.ndarray
    response_logit: np.ndarray
    night_owl: np.ndarray
    start_wellbeing: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.start_wellbeing = self.wellbeing.copy()


def _draw_users(world: World, rng: np.random.Generator) -> _Users:
    n = len(world.user_ids)
    users = world.users.sort("user_id")
    teen = users["is_teen"].to_numpy().astype(bool)
    comp = rng.beta(2.0, 3.0, n) + 0.15 * teen
    base = np.clip(rng.normal(0.62, 0.12, n), 0.1, 0.95)
    return _Users(
        ids=world.user_ids.copy(),
        is_teen=teen,
        timezone=users["timezone"].to_list(),
        compulsivity=np.clip(comp, 0.0, 1.0),
        baseline=base,
        wellbeing=base.copy(),
        visit_rate=0.6 * _history_rate(world) + 0.4 * rng.gamma(3.0, 1.0 / 3.0, n),
        response_logit=rng.normal(-0.6, 0.6, n),
        night_owl=np.clip(0.08 + 0.25 * comp + 0.1 * teen, 0.0, 0.6),
    )


def wellbeing_step(
    w: float,
    *,
    affinity: float,
    intensity: float,
    watch_frac: float,
    connected: float,
    compulsivity: float,
    late: bool,
    long_session: bool,
) -> float:
    """A simulated user's hidden wellbeing after viewing one clip.

    Valued viewing (true affinity above 0.45, a typical feed clip) and connected viewing
    (a followed creator or a friend) raise it; low-value viewing, compulsive viewing (an
    intense clip of low value, weighted by the user's compulsivity), late nights and very long
    sessions lower it. Every term scales with the share of the clip watched. Clipped to [0, 1].
    """
    valued = affinity - 0.45
    compulsive = intensity * max(0.0, 0.6 - affinity) * (0.5 + compulsivity)
    dw = watch_frac * (
        0.010 * valued
        + 0.006 * connected
        - 0.012 * compulsive
        - 0.004 * float(late)
        - 0.003 * float(long_session)
    )
    return float(min(1.0, max(0.0, w + dw)))


def _history_rate(world: World) -> np.ndarray:
    """Each user's sessions in the world's logged period over the mean (users without any:
    a quarter of the mean), so habits carry over from the pre-period into the simulation."""
    per_user = (
        world.events.filter(pl.col("event_type") == "impression")
        .group_by("user_id")
        .agg(pl.col("session_id").n_unique().alias("n"))
    )
    counts = dict(zip(per_user["user_id"].to_list(), per_user["n"].to_list(), strict=True))
    raw = np.array([float(counts.get(int(u), 0)) for u in world.user_ids])
    mean = float(raw[raw > 0].mean()) if np.any(raw > 0) else 1.0
    return np.where(raw > 0, raw / mean, 0.25)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@dataclass
class _SessionLog:
    """What one session did (summed into the per-user and daily tallies)."""

    minutes: float = 0.0
    views: int = 0
    pages: int = 0
    value_sum: float = 0.0
    stop_card: bool = False
    tapered_pages: int = 0
    answers: list[int] = field(default_factory=list)
    true_satisfaction: float = float("nan")


class Simulator:
    """Runs simulated users against an engine (see the module docstring).

    Parameters
    ----------
    engine : Engine
        Engine on the world's data directory, the experiment stored and running.
    world : World
        The world the store was built from (its ground truth drives the users).
    experiment : Experiment
        The running experiment (for the per-arm tallies).
    config : SimulationConfig
        Behaviour and size.
    start : datetime
        Naive UTC start of day 0.
    """

    def __init__(
        self,
        engine: Engine,
        world: World,
        experiment: Experiment,
        config: SimulationConfig,
        start: datetime,
    ) -> None:
        from pipelines.experiments.assignment import assign

        self.engine = engine
        self.world = world
        self.experiment = experiment
        self.cfg = config
        self.start = start
        self.rng = np.random.default_rng(config.seed + 17)
        self.users = _draw_users(world, self.rng)
        self.arm = [assign(experiment, int(u)) for u in self.users.ids]
        n = len(self.users.ids)
        self.minutes = np.zeros(n)
        self.sessions = np.zeros(n)
        self.views = np.zeros(n)
        self.pages = 0
        self.true_sat: list[list[float]] = [[] for _ in range(n)]
        self.daily: list[dict[str, Any]] = []
        self._wellbeing_svc = engine.wellbeing
        self.self_limited = self._set_self_limits()
        self._durations = dict(
            zip(world.clips["item_id"].to_list(), world.clips["duration_s"].to_list(), strict=True)
        )

    def _set_self_limits(self) -> int:
        """Some adults set themselves a daily limit (through the real governor settings)."""
        svc = self._wellbeing_svc
        if self.cfg.self_limit_share <= 0.0:
            return 0
        n = 0
        for k, uid in enumerate(self.users.ids):
            if self.users.is_teen[k] or self.rng.random() >= self.cfg.self_limit_share:
                continue
            limit = int(self.rng.integers(10, 25))
            svc.governor.update_own(int(uid), {"daily_limit_min": limit})
            n += 1
        return n

    # -- one session ------------------------------------------------------------------------
    def _session(self, k: int, t: datetime) -> _SessionLog:
        uid = int(self.users.ids[k])
        st = self.engine.state
        connected_authors = set(st.graph.following.get(uid, set())) | set(st.graph.friends(uid))
        mood = float(self.rng.normal(0.0, 0.5))
        comp = float(self.users.compulsivity[k])
        late = _is_late(t, self.users.timezone[k])
        fatigue = 0.0
        log = _SessionLog()
        cursor: str | None = None
        for _ in range(self.cfg.max_pages):
            page = self.engine.feed(uid, limit=self.cfg.page_size, cursor=cursor, now=t)
            self.pages += 1
            log.pages += 1
            if page.governor is not None and page.governor.taper > 0.0:
                log.tapered_pages += 1
            if page.survey is not None:
                self._answer(k, page.survey, log, t)
            if page.stop_card is not None or not page.items:
                log.stop_card = page.stop_card is not None
                break
            rows, t, fatigue, left = self._watch(
                k, page, t, mood, comp, late, fatigue, connected_authors, log
            )
            self.engine.ingest_events(pl.DataFrame(rows, schema=_EVENT_SCHEMA))
            if left:
                break
            cursor = page.next_cursor
            if cursor is None:
                break
        if log.views:
            value = log.value_sum / log.views
            w = float(self.users.wellbeing[k])
            log.true_satisfaction = float(np.clip(1.0 + 4.0 * (0.55 * w + 0.45 * value), 1, 5))
        return log

    def _watch(
        self,
        k: int,
        page: FeedPage,
        t: datetime,
        mood: float,
        comp: float,
        late: bool,
        fatigue: float,
        connected_authors: set[int],
        log: _SessionLog,
    ) -> tuple[list[dict[str, Any]], datetime, float, bool]:
        uid = int(self.users.ids[k])
        world = self.world
        ids = np.array([it.item_id for it in page.items], dtype=np.int64)
        idx = world.item_index(ids)
        aff = world.true_affinity(np.full(len(ids), uid), ids)
        aff = np.clip(aff + 0.08 * mood * world.clip_energy[idx], 0.0, 1.0)
        inten = world.clip_intensity[idx]
        rows: list[dict[str, Any]] = []
        w = float(self.users.wellbeing[k])
        left = False
        for j, it in enumerate(page.items):
            a, x = float(aff[j]), float(inten[j])
            connected = 1.0 if it.author_id in connected_authors else 0.0
            frac = 0.05 + 0.9 * a**1.3 + 0.35 * comp * (x - 0.4) - 0.2 * fatigue
            frac = float(np.clip(frac + self.rng.normal(0.0, 0.08), 0.02, 1.0))
            dur = float(self._durations.get(it.item_id, 15.0))
            watch_s = frac * dur
            base = {
                "user_id": uid,
                "item_id": it.item_id,
                "ts": t,
                "received_at": t,
                "session_id": page.session_id,
                "request_id": page.request_id,
                "position": it.position,
                "watch_s": None,
                "watch_frac": None,
            }
            eid = f"sim-{page.request_id}-{it.position}"
            if frac < 0.12:
                rows.append({**base, "event_id": f"{eid}-skip", "event_type": "skip"})
            else:
                rows.append(
                    {
                        **base,
                        "event_id": f"{eid}-view",
                        "event_type": "view",
                        "watch_s": watch_s,
                        "watch_frac": frac,
                    }
                )
                log.views += 1
                log.minutes += watch_s / 60.0
                w = wellbeing_step(
                    w,
                    affinity=a,
                    intensity=x,
                    watch_frac=frac,
                    connected=connected,
                    compulsivity=comp,
                    late=late,
                    long_session=log.minutes > 25.0,
                )
                log.value_sum += float(np.clip(a + 0.2 * connected - 0.3 * x + 0.2, 0.0, 1.0))
            if self.rng.random() < 0.04 + 0.3 * a**2 * frac:
                rows.append({**base, "event_id": f"{eid}-like", "event_type": "like"})
            if x > 0.7 and a < 0.25 and self.rng.random() < 0.03:
                rows.append({**base, "event_id": f"{eid}-report", "event_type": "report"})
            t = t + timedelta(seconds=watch_s + 1.5)
            fatigue += 0.02 + 0.02 * x
            p_exit = 0.01 + 0.04 * fatigue + 0.12 * max(0.0, 0.3 - a) - 0.03 * comp * x
            if self.rng.random() < float(np.clip(p_exit, 0.005, 0.9)):
                left = True
                break
        self.users.wellbeing[k] = w
        return rows, t, fatigue, left

    def _answer(self, k: int, card: SurveyCard, log: _SessionLog, t: datetime) -> None:
        svc = self._wellbeing_svc
        w = float(self.users.wellbeing[k])
        if self.rng.random() >= _sigmoid(float(self.users.response_logit[k]) + 3.0 * (w - 0.5)):
            return  # non-response: the card expires
        value = log.value_sum / log.views if log.views else 0.5
        mean = 1.0 + 4.0 * (w if card.kind == "periodic" else 0.55 * w + 0.45 * value)
        answer = int(np.clip(round(mean + self.rng.normal(0.0, 0.5)), 1, 5))
        try:
            svc.surveys.answer(card.survey_id, answer, now=t)
        except Exception:
            logger.exception("could not answer survey %s", card.survey_id)
            return
        log.answers.append(answer)

    # -- days -------------------------------------------------------------------------------
    def run(self, *, progress: bool = False) -> None:
        """Simulate every day; fills the tallies and the daily series."""
        from rich.progress import Progress

        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task("simulating days", total=self.cfg.days)
            for day in range(self.cfg.days):
                self._day(day)
                bar.advance(task)

    def _day(self, day: int) -> None:
        u = self.users
        n = len(u.ids)
        day_start = self.start + timedelta(days=day)
        visits = self.rng.poisson(
            self.cfg.visits_per_day * u.visit_rate * (0.3 + 1.15 * u.wellbeing)
        )
        plan: list[tuple[datetime, int]] = []
        for k in range(n):
            for _ in range(int(visits[k])):
                if self.rng.random() < u.night_owl[k]:
                    local_h = float(self.rng.uniform(23.0, 26.0))
                else:
                    local_h = float(self.rng.uniform(7.0, 23.0))
                offset = _utc_offset_hours(u.timezone[k], day_start)
                plan.append((day_start + timedelta(hours=local_h - offset), k))
        plan.sort()
        tallies: dict[str, dict[str, float]] = {}
        for t, k in plan:
            log = self._session(k, t)
            self.minutes[k] += log.minutes
            self.views[k] += log.views
            self.sessions[k] += 1
            if not math.isnan(log.true_satisfaction):
                self.true_sat[k].append(log.true_satisfaction)
            arm = self.arm[k] or "<none>"
            tal = tallies.setdefault(arm, _zero_tally())
            tal["minutes"] += log.minutes
            tal["sessions"] += 1
            tal["pages"] += log.pages
            tal["stop_cards"] += float(log.stop_card)
            tal["tapered_pages"] += log.tapered_pages
            tal["answers"] += len(log.answers)
            tal["answer_sum"] += sum(log.answers)
            if not math.isnan(log.true_satisfaction):
                tal["true_sat_sum"] += log.true_satisfaction
                tal["true_sat_n"] += 1
        # Nightly drift back toward the baseline.
        u.wellbeing += 0.03 * (u.baseline - u.wellbeing)
        self.engine.writer.flush()
        for arm in [*dict.fromkeys(a for a in self.arm if a is not None)]:
            members = np.array([a == arm for a in self.arm])
            tal = tallies.get(arm, _zero_tally())
            n_arm = max(1, int(members.sum()))
            self.daily.append(
                {
                    "day": day,
                    "date": day_start.date().isoformat(),
                    "arm": arm,
                    "users": int(members.sum()),
                    "wellbeing": float(u.wellbeing[members].mean()),
                    "minutes_per_user": tal["minutes"] / n_arm,
                    "sessions_per_user": tal["sessions"] / n_arm,
                    "pages": int(tal["pages"]),
                    "stop_cards": int(tal["stop_cards"]),
                    "tapered_pages": int(tal["tapered_pages"]),
                    "survey_answers": int(tal["answers"]),
                    "survey_mean": tal["answer_sum"] / tal["answers"] if tal["answers"] else None,
                    "true_satisfaction": tal["true_sat_sum"] / tal["true_sat_n"]
                    if tal["true_sat_n"]
                    else None,
                }
            )
        logger.info("simulated day %d: %d sessions, %d pages so far", day, len(plan), self.pages)

    # -- report -----------------------------------------------------------------------------
    def ground_truth(self, *, alpha: float = 0.05) -> list[dict[str, Any]]:
        """Per treatment arm: hidden-state metrics vs control, with intervals."""
        arms = self.experiment.arm_names
        control = "control" if "control" in arms else arms[0]
        arm = np.array([a or "" for a in self.arm])
        u = self.users
        true_sat = np.array([np.mean(s) if s else np.nan for s in self.true_sat])
        out: list[dict[str, Any]] = []
        for name in arms:
            if name == control:
                continue
            a, b = arm == control, arm == name
            metrics: dict[str, Any] = {}
            if a.sum() >= 2 and b.sum() >= 2:
                cup = cuped_diff(
                    u.wellbeing[a], u.start_wellbeing[a], u.wellbeing[b], u.start_wellbeing[b]
                )
                metrics["wellbeing_end"] = {
                    "label": "hidden wellbeing at the end (0-1)",
                    **_est(diff_in_means(u.wellbeing[a], u.wellbeing[b], alpha=alpha)),
                    "cuped": {
                        **_est(cup.estimate),
                        "variance_reduction": cup.variance_reduction,
                    },
                }
                change = u.wellbeing - u.start_wellbeing
                metrics["wellbeing_change"] = {
                    "label": "change in hidden wellbeing",
                    **_est(diff_in_means(change[a], change[b], alpha=alpha)),
                }
                sa, sb = true_sat[a & ~np.isnan(true_sat)], true_sat[b & ~np.isnan(true_sat)]
                if sa.size >= 2 and sb.size >= 2:
                    metrics["true_satisfaction"] = {
                        "label": "true session satisfaction (1-5)",
                        **_est(diff_in_means(sa, sb, alpha=alpha)),
                    }
                metrics["sim_minutes"] = {
                    "label": "watch minutes per user (whole period)",
                    **_est(diff_in_means(self.minutes[a], self.minutes[b], alpha=alpha)),
                }
                metrics["sim_sessions"] = {
                    "label": "sessions per user (retention)",
                    **_est(diff_in_means(self.sessions[a], self.sessions[b], alpha=alpha)),
                }
            out.append({"arm": name, "control": control, "metrics": metrics})
        return out


def _zero_tally() -> dict[str, float]:
    keys = ("minutes", "sessions", "pages", "stop_cards", "tapered_pages", "answers")
    return {k: 0.0 for k in (*keys, "answer_sum", "true_sat_sum", "true_sat_n")}


def _est(e: Estimate) -> dict[str, Any]:
    def f(v: float) -> float | None:
        return v if math.isfinite(v) else None

    return {
        "mean_a": f(e.mean_a),
        "mean_b": f(e.mean_b),
        "diff": f(e.diff),
        "ci_low": f(e.ci_low),
        "ci_high": f(e.ci_high),
        "p_value": f(e.p_value),
        "rel_diff": f(e.rel_diff),
        "n_a": e.n_a,
        "n_b": e.n_b,
    }


_EVENT_SCHEMA: dict[str, Any] = {
    "event_id": pl.String,
    "user_id": pl.Int64,
    "item_id": pl.Int64,
    "event_type": pl.String,
    "ts": pl.Datetime("us"),
    "received_at": pl.Datetime("us"),
    "session_id": pl.String,
    "request_id": pl.String,
    "position": pl.Int32,
    "watch_s": pl.Float64,
    "watch_frac": pl.Float64,
}


@functools.lru_cache(maxsize=512)
def _zone(tz_name: str) -> tzinfo:
    try:
        return ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _utc_offset_hours(tz_name: str, at: datetime) -> float:
    offset = _zone(tz_name).utcoffset(at)
    return offset.total_seconds() / 3600.0 if offset is not None else 0.0


def _is_late(t: datetime, tz_name: str) -> bool:
    local = t + timedelta(hours=_utc_offset_hours(tz_name, t))
    return local.hour >= 23 or local.hour < 5


def build_simulation_world(
    data_dir: Path, config: SimulationConfig
) -> tuple[World, dict[str, Any]]:
    """Build the world into a fresh ``data_dir`` (no caption embeddings) and fit the
    satisfaction model on simulated survey answers of its logged period when wellbeing is
    installed. Returns the world and what was done."""
    data_dir = Path(data_dir)
    reset_data_dir(data_dir)
    cfg = WorldConfig(
        n_users=config.n_users,
        n_clips=config.n_clips,
        n_events=config.n_events if config.n_events is not None else 60 * config.n_users,
        seed=config.seed,
    )
    world = build_world(cfg)
    store = Store(data_dir / "steerfeed.duckdb")
    try:
        counts = load_world(store, world)
        store.checkpoint()
    finally:
        store.close()
    return world, {"world": counts}


def _fit_satisfaction(engine: Engine, world: World, seed: int) -> dict[str, Any]:
    """Simulated pre-period survey answers, then the satisfaction job."""
    sim = simulate_surveys(engine.store, world, seed=seed)
    job = run_job("satisfaction", JobContext(engine))
    model = engine.wellbeing.satisfaction.model
    return {
        "pre_period_answers": sim.to_dict(),
        "satisfaction_job_ok": job.ok,
        "satisfaction_job": job.message or job.counts,
        "satisfaction_model": None if model is None else model.version,
    }


def run_simulation(
    experiment: Experiment,
    data_dir: Path,
    config: SimulationConfig | None = None,
    *,
    progress: bool = False,
) -> dict[str, Any]:
    """Build a world, run ``experiment`` on its users for ``config.days`` days, analyse it.

    Parameters
    ----------
    experiment : Experiment
        The experiment (its status and window are replaced: it runs from the first simulated
        day, for the whole simulation).
    data_dir : Path
        Folder for the simulation's store (rebuilt).
    config : SimulationConfig or None, optional
        Size and behaviour.
    progress : bool, optional
        Show a progress bar.

    Returns
    -------
    dict
        ``config``, ``setup``, ``arms`` (users per arm), ``analysis`` (the logged-metrics
        analysis), ``ground_truth`` (hidden-state comparisons), ``comparisons`` (both merged per
        treatment arm), ``daily`` series per arm and ``governor`` totals; also stored as the
        experiment's ``simulation`` result.
    """
    cfg = config or SimulationConfig()
    t0 = time.perf_counter()
    world, setup = build_simulation_world(Path(data_dir), cfg)
    start = (world.config.end + _GAP).replace(hour=0, minute=0, second=0, microsecond=0)
    exp = parse_experiment(
        {
            **experiment.model_dump(mode="json"),
            "status": "running",
            "start": start.replace(tzinfo=UTC).isoformat(),
            "stop": None,
        },
        source=f"simulation of {experiment.name!r}",
    )
    engine = open_engine(data_dir)
    try:
        setup.update(_fit_satisfaction(engine, world, cfg.seed))
        repo = engine.experiments
        repo.save(exp)
        sim = Simulator(engine, world, exp, cfg, start)
        sim.run(progress=progress)
        engine.writer.flush()
        analysis = analyze(engine.store, exp)
        truth = sim.ground_truth()
        comparisons = []
        for comp in analysis["comparisons"]:
            gt: dict[str, Any] = next(
                (g for g in truth if g["arm"] == comp["arm"]), {"metrics": {}}
            )
            comparisons.append({**comp, "metrics": {**gt["metrics"], **comp["metrics"]}})
        arms = [
            {"name": a["name"], "users": int(sum(1 for x in sim.arm if x == a["name"]))}
            for a in analysis["arms"]
        ]
        governor = {
            arm: {
                "stop_cards": int(sum(d["stop_cards"] for d in sim.daily if d["arm"] == arm)),
                "tapered_pages": int(sum(d["tapered_pages"] for d in sim.daily if d["arm"] == arm)),
                "pages": int(sum(d["pages"] for d in sim.daily if d["arm"] == arm)),
            }
            for arm in exp.arm_names
        }
        report = {
            "experiment": exp.name,
            "config": cfg.model_dump(),
            "setup": setup,
            "start": start.isoformat(),
            "simulated_users": len(sim.users.ids),
            "self_limited_users": sim.self_limited,
            "pages": sim.pages,
            "arms": arms,
            "analysis": analysis,
            "ground_truth": truth,
            "comparisons": comparisons,
            "daily": sim.daily,
            "governor": governor,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        repo.save_result(exp.name, "simulation", report)
        repo.save_result(exp.name, "analysis", analysis)
    finally:
        engine.close()
    logger.info(
        "simulation of %s: %d users, %d days, %d pages in %.1f s",
        exp.name,
        len(world.user_ids),
        cfg.days,
        report["pages"],
        report["seconds"],
    )
    return report
