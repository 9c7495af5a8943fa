"""Survey answers on the demo world, drawn from its ground truth (for demos and evaluation).

The demo world (:mod:`pipelines.offline.demo_world`) knows how much each user really likes each
clip (:meth:`~pipelines.offline.demo_world.World.true_affinity`) and how intense each clip is. This
module adds a ground-truth *satisfaction* on top, then runs the real sampling policy over the logged
sessions and a planted response bias over who answers:

- session satisfaction (1-5) rises with the mean true affinity of the clips viewed, falls with
  their intensity (twice as much for teens), with minutes beyond three (demo sessions are short)
  and late at night, plus a per-user effect;
- a shown card is answered with a probability that rises with satisfaction (happy people answer
  more) and falls for heavy users and teens (who are also less satisfied here), so the answers
  that come back over-state satisfaction;
- periodic "is your life better" answers follow the user's mean satisfaction.

Nothing here is used when serving; it only fills ``survey_prompts`` like real users would.
"""

from __future__ import annotations

import logging
import math
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from wellbeing.governor import to_utc
from wellbeing.satisfaction import LATE_NIGHT_HOURS, load_sessions
from wellbeing.surveys import QUESTIONS, SamplingPolicy, should_survey

if TYPE_CHECKING:
    from pipelines.offline.demo_world import World
    from storage.store import Store

logger = logging.getLogger(__name__)

PAGE_SIZE = 10
REGRET_AFTER_MIN = 3.0


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float64)


def true_satisfaction(
    affinity: NDArray[np.float64],
    intensity: NDArray[np.float64],
    *,
    is_teen: NDArray[np.float64],
    minutes: NDArray[np.float64],
    late_night: NDArray[np.float64],
    user_effect: NDArray[np.float64] | float = 0.0,
) -> NDArray[np.float64]:
    """Ground-truth satisfaction on the 1-5 scale of sessions with these mean clip properties.

    Parameters
    ----------
    affinity, intensity
        Mean true affinity and mean intensity of the clips viewed (both in ``[0, 1]``).
    is_teen, minutes, late_night
        The session's user is a teen (0/1), its minutes, whether it started late (0/1).
    user_effect
        A per-user shift on the logit scale.
    """
    z = (
        6.0 * (affinity - 0.38)
        - 2.0 * (intensity - 0.5) * (1.0 + is_teen)
        - 0.25 * np.maximum(minutes - REGRET_AFTER_MIN, 0.0)
        - 0.6 * late_night
        + user_effect
    )
    return 1.0 + 4.0 * _sigmoid(z)


@dataclass(frozen=True)
class SimulationReport:
    """What the simulation drew, and the true and naive means it implies."""

    sessions: int
    prompts: int
    answered: int
    true_mean_session: float
    true_mean_asked: float
    naive_mean_answered: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in vars(self).items()}


def session_truth(world: World, sessions: pl.DataFrame, *, seed: int = 0) -> pl.DataFrame:
    """Add ``true_satisfaction`` (and ``mean_affinity``/``mean_intensity``) to sessions."""
    rng = np.random.default_rng(seed)
    users = sessions["user_id"].to_numpy()
    u_idx = world.user_index(users)
    effects = rng.normal(0.0, 0.5, size=len(world.user_ids))
    aff = np.zeros(sessions.height)
    inten = np.zeros(sessions.height)
    for j, (u, viewed) in enumerate(zip(users.tolist(), sessions["viewed"].to_list(), strict=True)):
        items = np.asarray(viewed or [], dtype=np.int64)
        if len(items) == 0:
            aff[j], inten[j] = 0.4, 0.5
            continue
        aff[j] = float(world.true_affinity(np.full(len(items), u), items).mean())
        inten[j] = float(world.clip_intensity[world.item_index(items)].mean())
    hours = (
        sessions.select(pl.col("session_start").dt.hour()).to_series().to_numpy()
    )  # UTC hour; the local hour is applied below per timezone
    local = _local_hour(sessions, hours)
    late = np.isin(local, sorted(LATE_NIGHT_HOURS)).astype(np.float64)
    teen = sessions["is_teen"].fill_null(False).cast(pl.Float64).to_numpy()
    truth = true_satisfaction(
        aff,
        inten,
        is_teen=teen,
        minutes=sessions["minutes"].to_numpy(),
        late_night=late,
        user_effect=effects[u_idx],
    )
    return sessions.with_columns(
        pl.Series("mean_affinity", aff),
        pl.Series("mean_intensity", inten),
        pl.Series("true_satisfaction", truth),
    )


def _local_hour(sessions: pl.DataFrame, fallback: NDArray[Any]) -> NDArray[np.int64]:
    out = np.asarray(fallback, dtype=np.int64).copy()
    idx = sessions.with_row_index("_i")
    for (tz,), part in idx.group_by("timezone"):
        try:
            h = (
                part["session_start"]
                .dt.replace_time_zone("UTC")
                .dt.convert_time_zone(str(tz or "UTC"))
                .dt.hour()
            )
        except Exception:
            logger.warning("unknown time zone in the simulated world; hours left as UTC")
            continue
        out[part["_i"].to_numpy()] = h.to_numpy()
    return out


def simulate_surveys(
    store: Store,
    world: World,
    *,
    policy: SamplingPolicy | None = None,
    seed: int = 0,
) -> SimulationReport:
    """Run the sampling policy over every logged session and write shown cards and answers.

    Cards are written to ``survey_prompts`` with ``source = 'simulated'`` (answered or
    expired); earlier simulated cards are replaced.
    """
    policy = policy or SamplingPolicy(rate_per_week=2.0, min_spacing_hours=24.0)
    sessions = session_truth(world, load_sessions(store), seed=seed)
    if sessions.height == 0:
        return SimulationReport(0, 0, 0, float("nan"), float("nan"), float("nan"))
    rng = random.Random(seed)  # noqa: S311 (a seeded simulation)
    nrng = np.random.default_rng(seed + 1)
    first, last = sessions["session_start"].min(), sessions["session_end"].max()
    assert isinstance(first, datetime) and isinstance(last, datetime)
    span_days = max(1.0, (last - first).total_seconds() / 86400.0)
    per_user = sessions.group_by("user_id").agg(
        (pl.col("minutes").sum() * 7.0 / span_days).alias("minutes_week"),
        ((pl.col("n_impressions") / PAGE_SIZE).ceil().sum() * 7.0 / span_days).alias("pages_week"),
        pl.col("true_satisfaction").mean().alias("user_mean"),
    )
    weekly = {int(r[0]): (float(r[1]), float(r[2]), float(r[3])) for r in per_user.iter_rows()}
    rows: list[dict[str, Any]] = []
    asked_truth: list[float] = []
    for s in sessions.sort("user_id", "session_start").iter_rows(named=True):
        uid = int(s["user_id"])
        minutes_week, pages_week, user_mean = weekly[uid]
        n_pages = max(1, math.ceil((s["n_impressions"] or 1) / PAGE_SIZE))
        start, end = to_utc(s["session_start"]), to_utc(s["session_end"])
        step = (end - start) / n_pages
        created = s.get("user_created_at")
        for page in range(n_pages):
            at = start + step * page
            hist = _history(rows, uid)
            tenure = (at - to_utc(created)).total_seconds() / 86400.0 if created else None
            draw = should_survey(
                policy,
                user_id=uid,
                now_utc=at,
                last_survey_at=hist[0],
                last_periodic_at=hist[1],
                activity_minutes_week=minutes_week,
                pages_this_week_expected=pages_week,
                rng=rng,
                tenure_days=tenure,
            )
            if draw is None:
                continue
            truth = float(s["true_satisfaction"])
            teen = 1.0 if s["is_teen"] else 0.0
            if QUESTIONS[draw.question_key].kind == "periodic":
                value = 3.0 + 1.2 * (user_mean - 3.0) + nrng.normal(0.0, 0.7)
            else:
                value = truth + nrng.normal(0.0, 0.6)
                asked_truth.append(truth)
            answer = int(np.clip(round(value), 1, 5))
            logit = (
                0.2
                + 0.4 * (truth - 3.0)
                - 1.0 * teen
                - 0.5 * math.log1p(minutes_week / 60.0)
                + 0.8 * (tenure is not None and tenure > 60)
            )
            answered = nrng.random() < 1.0 / (1.0 + math.exp(-logit))
            rows.append(
                {
                    "survey_id": f"sim-{uuid.UUID(int=rng.getrandbits(128)).hex}",
                    "user_id": uid,
                    "question_key": draw.question_key,
                    "kind": draw.kind,
                    "stratum": draw.stratum,
                    "request_id": None,
                    "session_id": None,
                    "shown_at": at.replace(tzinfo=None),
                    "page_probability": draw.page_probability,
                    "question_probability": draw.question_probability,
                    "inclusion_probability": draw.inclusion_probability,
                    "status": "answered" if answered else "expired",
                    "answer": answer if answered else None,
                    "responded_at": (at + timedelta(seconds=20)).replace(tzinfo=None)
                    if answered
                    else None,
                    "response_propensity": None,
                    "source": "simulated",
                }
            )
            break  # one card per session at most
    _write_prompts(store, rows)
    answered_vals = [
        r["answer"]
        for r in rows
        if r["status"] == "answered" and QUESTIONS[r["question_key"]].kind == "in_moment"
    ]
    report = SimulationReport(
        sessions=sessions.height,
        prompts=len(rows),
        answered=sum(r["status"] == "answered" for r in rows),
        true_mean_session=float(sessions["true_satisfaction"].mean()),  # type: ignore[arg-type]
        true_mean_asked=float(np.mean(asked_truth)) if asked_truth else float("nan"),
        naive_mean_answered=float(np.mean(answered_vals)) if answered_vals else float("nan"),
    )
    logger.info("simulated surveys %s", report.to_dict())
    return report


def _history(rows: list[dict[str, Any]], uid: int) -> tuple[datetime | None, dict[str, datetime]]:
    last: datetime | None = None
    periodic: dict[str, datetime] = {}
    for r in reversed(rows):
        if r["user_id"] != uid:
            break  # rows are written user by user
        at = to_utc(r["shown_at"])
        last = at if last is None or at > last else last
        if r["kind"] == "periodic" and r["question_key"] not in periodic:
            periodic[r["question_key"]] = at
    return last, periodic


def _write_prompts(store: Store, rows: list[dict[str, Any]]) -> None:
    schema: dict[str, Any] = {
        "survey_id": pl.String,
        "user_id": pl.Int64,
        "question_key": pl.String,
        "kind": pl.String,
        "stratum": pl.String,
        "request_id": pl.String,
        "session_id": pl.String,
        "shown_at": pl.Datetime("us"),
        "page_probability": pl.Float64,
        "question_probability": pl.Float64,
        "inclusion_probability": pl.Float64,
        "status": pl.String,
        "answer": pl.Int32,
        "responded_at": pl.Datetime("us"),
        "response_propensity": pl.Float64,
        "source": pl.String,
    }
    df = pl.DataFrame(rows, schema=schema)
    with store.write() as cur:
        cur.execute("DELETE FROM survey_prompts WHERE source = 'simulated'")
        if df.height:
            cur.register("_prompts", df.to_arrow())
            try:
                cur.execute("INSERT INTO survey_prompts BY NAME SELECT * FROM _prompts")
            finally:
                cur.unregister("_prompts")
