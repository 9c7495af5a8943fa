"""The satisfaction model: predicts a session's survey answer from how the session went.

Sessions are cut from the event log (a gap over ``gap_s`` between a user's events, on any device,
ends one; server ``received_at`` times). Each session gets two kinds of features:

- **clip features** (:data:`SAT_CLIP_FEATURES`): the mean, over the clips viewed, of per-clip
  columns the feed's candidate hydrators also produce at serving time (completion, like, skip
  and see-less rates, generated, follows the author) plus the lexicon intensity of
  :mod:`wellbeing.intensity`. Training computes them with the serving hydrator itself, so
  training and serving never drift;
- **session features** (:data:`SAT_SESSION_FEATURES`): minutes, views, skips, see-less, a late
  night start (local time), an abrupt exit, the teen flag.

:class:`SatisfactionModel` is a weighted ridge regression on standardised features (weights are
inverse inclusion x response propensities, so answers stand for everyone). Because the clip part
is linear in the *mean* clip features, the model also scores one clip:
:meth:`SatisfactionModel.clip_head` is the change in predicted answer a clip brings, which the
ranking's satisfaction head adds to the value of each candidate.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from ranking.hydrators.clip_features import ClipFeaturesHydrator
from ranking.pipeline import FeedQuery
from wellbeing.errors import WellbeingError

if TYPE_CHECKING:
    from ranking.state import FeedState
    from storage.store import Store
    from wellbeing.intensity import ClipIntensity

logger = logging.getLogger(__name__)

SAT_CLIP_FEATURES: tuple[str, ...] = (
    "completion_rate",
    "like_rate",
    "skip_rate",
    "see_less_rate",
    "report_rate",
    "is_generated",
    "follows_author",
    "intensity",
)
SAT_SESSION_FEATURES: tuple[str, ...] = (
    "minutes_log",
    "views_log",
    "mean_watch_frac",
    "skip_share",
    "like_share",
    "see_less_any",
    "late_night",
    "abrupt_exit",
    "is_teen",
)
SCALE_MIN, SCALE_MAX = 1.0, 5.0
IN_MOMENT_KEYS: tuple[str, ...] = ("session_feel", "well_spent")
LATE_NIGHT_HOURS = frozenset({23, 0, 1, 2, 3, 4})
ABRUPT_EXIT_FRAC = 0.1
"""A session whose last view watched less than this share of the clip ended abruptly."""


class SatisfactionModelError(WellbeingError):
    """The satisfaction model was misused (not fitted, too few answers, bad parameters)."""


# -- sessions -------------------------------------------------------------------------------------

# SQL that DuckDB and PostgreSQL both run (array_agg(... ORDER BY)[1] for the last view).
_SESSIONS_SQL = """
WITH ev AS (
    SELECT e.user_id, e.item_id, e.event_type, e.received_at, e.event_id, e.watch_s,
           e.watch_frac, e.experiments,
           CASE WHEN lag(e.received_at) OVER w IS NULL
                  OR extract(epoch FROM e.received_at - lag(e.received_at) OVER w) * 1000
                     > ? THEN 1 ELSE 0 END AS new_session
    FROM events e
    WINDOW w AS (PARTITION BY e.user_id ORDER BY e.received_at, e.event_id)
),
numbered AS (
    SELECT *, sum(new_session) OVER (
        PARTITION BY user_id ORDER BY received_at, event_id ROWS UNBOUNDED PRECEDING
    ) AS session_no
    FROM ev
)
SELECT user_id, session_no,
       min(received_at) AS session_start,
       max(received_at) AS session_end,
       count(*) FILTER (WHERE event_type = 'impression') AS n_impressions,
       count(*) FILTER (WHERE event_type = 'view') AS n_views,
       coalesce(sum(watch_s) FILTER (WHERE event_type = 'view'), 0) / 60.0 AS minutes,
       coalesce(avg(watch_frac) FILTER (WHERE event_type = 'view'), 0) AS mean_watch_frac,
       count(*) FILTER (WHERE event_type = 'skip') AS n_skips,
       count(*) FILTER (WHERE event_type = 'like') AS n_likes,
       count(*) FILTER (WHERE event_type = 'see_less') AS n_see_less,
       (array_agg(watch_frac ORDER BY received_at DESC, event_id DESC)
           FILTER (WHERE event_type = 'view'))[1] AS last_watch_frac,
       max(experiments) FILTER (
           WHERE event_type = 'impression' AND experiments IS NOT NULL
             AND experiments NOT IN ('', '{}', 'null')) AS experiments,
       array_agg(item_id) FILTER (WHERE event_type = 'view' AND item_id IS NOT NULL) AS viewed
FROM numbered
GROUP BY user_id, session_no
"""


def load_sessions(store: Store, *, gap_s: int = 1800) -> pl.DataFrame:
    """Cut the event log into sessions; one row per session with counts and viewed clips.

    Columns: ``user_id, session_no, session_start, session_end, n_impressions, n_views,
    minutes, mean_watch_frac, n_skips, n_likes, n_see_less, last_watch_frac, experiments,
    viewed`` (list of item ids), plus the user's ``timezone``, ``is_teen`` and ``created_at``.
    """
    sessions = store.query(_SESSIONS_SQL, [gap_s * 1000])
    users = store.query(
        "SELECT user_id, timezone, is_teen, created_at AS user_created_at FROM users"
    )
    return sessions.join(users, on="user_id", how="left").sort("user_id", "session_start")


def _local_hours(sessions: pl.DataFrame) -> pl.Series:
    """Local hour of each session's start in its user's timezone."""
    out = np.zeros(sessions.height, dtype=np.int64)
    idx = sessions.with_row_index("_i")
    for (tz,), part in idx.group_by("timezone"):
        name = str(tz) if tz else "UTC"
        try:
            hours = (
                part["session_start"]
                .dt.replace_time_zone("UTC")
                .dt.convert_time_zone(name)
                .dt.hour()
            )
        except Exception:  # unknown zone in the data: count it as UTC
            hours = part["session_start"].dt.hour()
        out[part["_i"].to_numpy()] = hours.to_numpy()
    return pl.Series("local_hour", out)


def session_features(
    sessions: pl.DataFrame, state: FeedState, intensity: ClipIntensity
) -> pl.DataFrame:
    """Add :data:`SAT_SESSION_FEATURES` and the session means of :data:`SAT_CLIP_FEATURES`.

    Clip features come from the serving hydrator (``ClipFeaturesHydrator``) over the current
    serving state, so they are the columns the ranking sees; ``follows_author`` is per user.
    """

    if sessions.height == 0:
        return sessions.with_columns(
            [pl.lit(0.0).alias(c) for c in (*SAT_SESSION_FEATURES, *SAT_CLIP_FEATURES)]
        )
    views = (
        sessions.select("user_id", "session_no", "viewed")
        .explode("viewed")
        .drop_nulls("viewed")
        .rename({"viewed": "item_id"})
        .with_columns(pl.col("item_id").cast(pl.Int64))
    )
    items = views.select("item_id").unique().sort("item_id")
    query = FeedQuery(user_id=-1, limit=1, now=datetime.now(UTC), session_id="sat")
    hydrated = ClipFeaturesHydrator(state).hydrate(query, items)
    clip_cols = [c for c in SAT_CLIP_FEATURES if c not in ("follows_author", "intensity")]
    per_item = hydrated.select(
        "item_id",
        "author_id",
        *[pl.col(c).cast(pl.Float64) for c in clip_cols],
        pl.Series("intensity", intensity.for_rows(hydrated["row"].to_numpy())),
    )
    views = views.join(per_item, on="item_id", how="left")
    follows = np.fromiter(
        (
            a in state.graph.following.get(u, ())
            for u, a in zip(
                views["user_id"].to_list(), views["author_id"].fill_null(-1).to_list(), strict=True
            )
        ),
        dtype=np.float64,
        count=views.height,
    )
    views = views.with_columns(pl.Series("follows_author", follows))
    means = views.group_by("user_id", "session_no").agg(
        [pl.col(c).mean().alias(c) for c in SAT_CLIP_FEATURES]
    )
    out = sessions.join(means, on=["user_id", "session_no"], how="left")
    defaults = {
        c: float(per_item[c].fill_null(0.0).to_numpy().mean())
        for c in SAT_CLIP_FEATURES
        if c in per_item.columns
    }
    defaults.setdefault("follows_author", 0.0)
    views_n = pl.col("n_views").cast(pl.Float64)
    return out.with_columns(
        [pl.col(c).fill_null(defaults.get(c, 0.0)) for c in SAT_CLIP_FEATURES]
    ).with_columns(
        pl.col("minutes").log1p().alias("minutes_log"),
        views_n.log1p().alias("views_log"),
        (pl.col("n_skips") / pl.max_horizontal(views_n, 1.0)).alias("skip_share"),
        (pl.col("n_likes") / pl.max_horizontal(views_n, 1.0)).alias("like_share"),
        (pl.col("n_see_less") > 0).cast(pl.Float64).alias("see_less_any"),
        _local_hours(out).is_in(sorted(LATE_NIGHT_HOURS)).cast(pl.Float64).alias("late_night"),
        (pl.col("last_watch_frac").fill_null(1.0) < ABRUPT_EXIT_FRAC)
        .cast(pl.Float64)
        .alias("abrupt_exit"),
        pl.col("is_teen").fill_null(False).cast(pl.Float64),
    )


def attach_answers(sessions: pl.DataFrame, prompts: pl.DataFrame) -> pl.DataFrame:
    """Add ``observed`` (the in-the-moment answer given about the session, else null),
    ``inclusion_probability`` and ``response_propensity`` of that answer.

    A card belongs to the session of the same user that it was shown in or right after
    (``session_start <= shown_at <= session_end + 10 minutes``).
    """
    cols = {
        "observed": pl.Float64,
        "inclusion_probability": pl.Float64,
        "response_propensity": pl.Float64,
    }
    answered = prompts.filter(
        (pl.col("status") == "answered") & pl.col("question_key").is_in(list(IN_MOMENT_KEYS))
    )
    if answered.height == 0 or sessions.height == 0:
        return sessions.with_columns([pl.lit(None, dtype=t).alias(c) for c, t in cols.items()])
    keys = sessions.select("user_id", "session_no", "session_start", "session_end")
    matched = (
        answered.select(
            "user_id",
            "shown_at",
            pl.col("answer").cast(pl.Float64).alias("observed"),
            pl.col("inclusion_probability").cast(pl.Float64),
            pl.col("response_propensity").cast(pl.Float64),
        )
        .join(keys, on="user_id", how="inner")
        .filter(
            (pl.col("shown_at") >= pl.col("session_start"))
            & (pl.col("shown_at") <= pl.col("session_end") + pl.duration(minutes=10))
        )
        .group_by("user_id", "session_no")
        .agg(pl.col("observed").mean(), pl.col(list(cols)[1:]).first())
    )
    return sessions.join(matched, on=["user_id", "session_no"], how="left")


# -- the model ------------------------------------------------------------------------------------


@dataclass
class SatisfactionModel:
    """Weighted ridge regression of the 1-5 answer on clip and session features.

    Parameters
    ----------
    l2
        Ridge penalty on standardised coefficients (the intercept is not penalised).
    """

    l2: float = 1.0
    clip_features: tuple[str, ...] = SAT_CLIP_FEATURES
    session_features: tuple[str, ...] = SAT_SESSION_FEATURES
    mean: NDArray[np.float64] | None = None
    scale: NDArray[np.float64] | None = None
    coef: NDArray[np.float64] | None = None
    intercept: float = 3.0
    version: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    kind: str = "in_moment"
    """``in_moment`` (the answer about a session) or ``long_term`` (the six-month answer from the
    weeks before it: the surrogate, :func:`surrogate_rows`)."""

    @property
    def features(self) -> tuple[str, ...]:
        """Every feature, clip features first."""
        return (*self.clip_features, *self.session_features)

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` ran (or parameters were loaded)."""
        return self.coef is not None

    def fit(
        self,
        frame: pl.DataFrame,
        answers: Sequence[float] | NDArray[np.float64],
        *,
        weights: Sequence[float] | NDArray[np.float64] | None = None,
    ) -> SatisfactionModel:
        """Fit on sessions with an answer.

        Raises
        ------
        SatisfactionModelError
            Fewer than 20 answers, or answers off the 1-5 scale.
        """
        x = self._matrix(frame)
        y = np.asarray(answers, dtype=np.float64)
        if len(y) != x.shape[0]:
            msg = f"{x.shape[0]} sessions but {len(y)} answers"
            raise SatisfactionModelError(msg)
        if len(y) < 20:
            msg = f"need at least 20 answered sessions to fit, got {len(y)}"
            raise SatisfactionModelError(msg)
        if np.any((y < SCALE_MIN) | (y > SCALE_MAX)) or not np.isfinite(y).all():
            msg = "answers must lie on the 1-5 scale"
            raise SatisfactionModelError(msg)
        w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
        w = w / w.mean()
        mean = np.average(x, axis=0, weights=w)
        scale = np.sqrt(np.average((x - mean) ** 2, axis=0, weights=w))
        scale[scale < 1e-9] = 1.0
        z = (x - mean) / scale
        design = np.hstack([np.ones((len(y), 1)), z])
        penalty = np.eye(design.shape[1]) * self.l2
        penalty[0, 0] = 0.0
        gram = design.T @ (design * w[:, None]) + penalty
        beta = np.linalg.solve(gram, design.T @ (w * y))
        self.mean, self.scale = mean, scale
        self.intercept = float(beta[0])
        self.coef = beta[1:]
        self.version = _version(self.to_params())
        logger.info("fitted %s satisfaction model n=%d version=%s", self.kind, len(y), self.version)
        return self

    def predict(self, frame: pl.DataFrame) -> NDArray[np.float64]:
        """Predicted answer per session, clipped to the 1-5 scale."""
        coef, mean, scale = self._fitted()
        z = (self._matrix(frame) - mean) / scale
        return np.clip(z @ coef + self.intercept, SCALE_MIN, SCALE_MAX)

    def clip_head(self, frame: pl.DataFrame) -> NDArray[np.float64]:
        """Change in predicted answer a clip brings (session features at their mean).

        Reads :attr:`clip_features` columns of candidates (missing ones count as average).
        """
        coef, mean, scale = self._fitted()
        k = len(self.clip_features)
        out = np.zeros(frame.height)
        for j, name in enumerate(self.clip_features[:k]):
            if name not in frame.columns:
                continue
            col = frame[name].cast(pl.Float64).fill_null(mean[j]).to_numpy()
            out += coef[j] * (col - mean[j]) / scale[j]
        return out

    def coefficients(self) -> dict[str, float]:
        """Standardised coefficient of each feature."""
        coef, _, _ = self._fitted()
        return {n: round(float(c), 4) for n, c in zip(self.features, coef, strict=True)}

    def to_params(self) -> dict[str, Any]:
        """JSON-ready parameters (:meth:`from_params` reads them back)."""
        coef, mean, scale = self._fitted()
        return {
            "l2": self.l2,
            "clip_features": list(self.clip_features),
            "session_features": list(self.session_features),
            "mean": mean.tolist(),
            "scale": scale.tolist(),
            "coef": coef.tolist(),
            "intercept": self.intercept,
            "kind": self.kind,
        }

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], *, version: str | None = None
    ) -> SatisfactionModel:
        """Rebuild a model from :meth:`to_params` output."""
        try:
            model = cls(
                l2=float(params["l2"]),
                clip_features=tuple(params["clip_features"]),
                session_features=tuple(params["session_features"]),
                mean=np.asarray(params["mean"], dtype=np.float64),
                scale=np.asarray(params["scale"], dtype=np.float64),
                coef=np.asarray(params["coef"], dtype=np.float64),
                intercept=float(params["intercept"]),
                kind=str(params.get("kind", "in_moment")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"bad satisfaction model parameters: {exc}"
            raise SatisfactionModelError(msg) from exc
        model.version = version or _version(params)
        return model

    def _fitted(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        if self.coef is None or self.mean is None or self.scale is None:
            msg = "SatisfactionModel is not fitted; run the 'satisfaction' job first"
            raise SatisfactionModelError(msg)
        return self.coef, self.mean, self.scale

    def _matrix(self, frame: pl.DataFrame) -> NDArray[np.float64]:
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            msg = f"sessions lack feature column(s) {missing}"
            raise SatisfactionModelError(msg)
        x = frame.select(pl.col(f).cast(pl.Float64).fill_null(0.0) for f in self.features)
        return x.to_numpy().astype(np.float64)


#: Version prefix of each kind of model (both live in ``satisfaction_models``).
VERSION_PREFIX = {"in_moment": "sat-", "long_term": "lts-"}


def _version(params: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    return VERSION_PREFIX[str(params.get("kind", "in_moment"))] + digest


#: The periodic question the long-term model predicts.
LONG_TERM_QUESTION = "life_better_6m"


def surrogate_rows(
    sessions: pl.DataFrame, prompts: pl.DataFrame, *, window_days: int = 56
) -> pl.DataFrame:
    """One row per answered six-month question: the person's short-term signals over the
    ``window_days`` before it was asked (the surrogate index of Athey, Chetty, Imbens and Kang:
    a long-term outcome modelled from short-term signals).

    ``sessions`` are featurised sessions (:func:`session_features`); each feature of the row is
    the mean over the window's sessions weighted by the clips viewed, so the clip features are
    the mix watched and the session features the share of long, late, regretted or abandoned
    sessions. Returns the feature columns plus ``user_id``, ``answer`` and ``weight`` (``1 /
    (inclusion x response propensity)``); answers with no session in the window are dropped.
    """
    answered = prompts.filter(
        (pl.col("question_key") == LONG_TERM_QUESTION) & (pl.col("status") == "answered")
    ).select(
        "user_id",
        "shown_at",
        pl.col("answer").cast(pl.Float64),
        (
            1.0
            / (
                pl.col("inclusion_probability").fill_null(1.0)
                * pl.col("response_propensity").fill_null(1.0)
            ).clip(1e-4, 1.0)
        ).alias("weight"),
    )
    feats = [*SAT_CLIP_FEATURES, *SAT_SESSION_FEATURES]
    if answered.height == 0 or sessions.height == 0:
        return pl.DataFrame(
            schema={
                **{c: pl.Float64 for c in feats},
                "user_id": pl.Int64,
                "answer": pl.Float64,
                "weight": pl.Float64,
            }
        )
    window = pl.duration(days=window_days)
    joined = (
        answered.with_row_index("_a")
        .join(sessions.select("user_id", "session_start", "n_views", *feats), on="user_id")
        .filter(
            (pl.col("session_start") < pl.col("shown_at"))
            & (pl.col("session_start") >= pl.col("shown_at") - window)
        )
        .with_columns(pl.max_horizontal(pl.col("n_views").cast(pl.Float64), 1.0).alias("_w"))
    )
    return (
        joined.group_by("_a", "user_id", "answer", "weight")
        .agg([((pl.col(c) * pl.col("_w")).sum() / pl.col("_w").sum()).alias(c) for c in feats])
        .sort("_a")
        .drop("_a")
    )


def calibration(
    predicted: NDArray[np.float64],
    observed: NDArray[np.float64],
    *,
    weights: NDArray[np.float64] | None = None,
    bins: int = 8,
) -> dict[str, Any]:
    """Calibration of predictions against answers: binned means, ECE, MAE and R².

    Bins are quantiles of the prediction; ``ece`` is the weighted mean absolute gap between the
    mean prediction and the mean answer over bins (in answer points).
    """
    p = np.asarray(predicted, dtype=np.float64)
    y = np.asarray(observed, dtype=np.float64)
    w = np.ones(len(p)) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(p) == 0:
        return {"n": 0, "bins": [], "ece": None, "mae": None, "r2": None}
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    rows: list[dict[str, float]] = []
    ece = 0.0
    for b in range(max(len(edges) - 1, 1)):
        m = which == b
        if not m.any():
            continue
        mp = float(np.average(p[m], weights=w[m]))
        my = float(np.average(y[m], weights=w[m]))
        share = float(w[m].sum() / w.sum())
        ece += share * abs(mp - my)
        rows.append(
            {"mean_predicted": round(mp, 3), "mean_observed": round(my, 3), "n": int(m.sum())}
        )
    resid = float(np.average((y - p) ** 2, weights=w))
    var = float(np.average((y - np.average(y, weights=w)) ** 2, weights=w))
    return {
        "n": len(p),
        "bins": rows,
        "ece": round(ece, 4),
        "mae": round(float(np.average(np.abs(y - p), weights=w)), 4),
        "r2": round(1.0 - resid / var, 4) if var > 0 else None,
    }
