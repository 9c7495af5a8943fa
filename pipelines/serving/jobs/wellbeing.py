"""Wellbeing jobs: response propensities, the satisfaction model and imputed session satisfaction.

``steerfeed jobs run satisfaction`` (every six hours in the server):

1. cards left unanswered past the response window are logged as non-responses (``expired``);
2. the response-propensity model is fitted on every closed card (answered or not) from the
   user's weekly minutes, tenure, teen flag and past response rate, and each card's
   ``response_propensity`` is stored (analytics weight answers by ``1 / (inclusion x
   response)``);
3. sessions are cut from the event log and featurised; the satisfaction model is fitted on
   sessions with an in-the-moment answer (weighted), its calibration is measured on held-out
   users and reported;
4. every session gets an imputed satisfaction (``session_satisfaction``), and the serving
   satisfaction head switches to the new model;
5. the long-term model (the surrogate for the six-month answer) is fitted on each answered
   six-month question and the person's sessions in the eight weeks before it, reported on
   held-out people, and served as the long-term head.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from pipelines.serving.jobs.runner import JobContext
from wellbeing.errors import PropensityModelError
from wellbeing.propensity import ResponsePropensityModel, describe
from wellbeing.satisfaction import (
    SatisfactionModel,
    attach_answers,
    calibration,
    load_sessions,
    session_features,
    surrogate_rows,
)

if TYPE_CHECKING:
    from pipelines.serving.engine import Engine

logger = logging.getLogger(__name__)

HOLDOUT_SHARE = 0.25

# SQL that DuckDB and PostgreSQL both run.
_PROMPT_FEATURES_SQL = """
WITH p AS (
    SELECT p.survey_id, p.user_id, p.shown_at, p.status,
           coalesce(CAST(extract(epoch FROM p.shown_at - u.created_at) AS DOUBLE) / 86400.0, 0)
               AS tenure_days,
           CAST(CAST(coalesce(u.is_teen, FALSE) AS INTEGER) AS DOUBLE) AS is_teen,
           count(*) OVER w AS n_before,
           coalesce(sum(CASE WHEN p.status = 'answered' THEN 1 ELSE 0 END) OVER w, 0)
               AS answered_before
    FROM survey_prompts p LEFT JOIN users u USING (user_id)
    WHERE p.status <> 'shown'
    WINDOW w AS (PARTITION BY p.user_id ORDER BY p.shown_at, p.survey_id
                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
)
SELECT p.survey_id, p.status = 'answered' AS responded,
       greatest(p.tenure_days, 0) AS tenure_days, p.is_teen,
       (1 + p.answered_before) / (2.0 + coalesce(p.n_before, 0)) AS past_response_rate,
       coalesce((SELECT sum(e.watch_s) FROM events e
                 WHERE e.user_id = p.user_id AND e.event_type = 'view'
                   AND e.received_at > p.shown_at - INTERVAL '7 days'
                   AND e.received_at <= p.shown_at), 0) / 60.0 AS activity_minutes_week
FROM p
"""


def fit_response_propensity(engine: Engine) -> dict[str, Any]:
    """Fit who-answers on closed cards and store each card's ``response_propensity``."""
    store = engine.store
    feats = store.query(_PROMPT_FEATURES_SQL)
    if feats.height == 0:
        return {"prompts_closed": 0}
    responded = feats["responded"].cast(pl.Int64).to_numpy()
    model = ResponsePropensityModel()
    try:
        model.fit(feats, responded)
        prop = model.predict(feats)
        info: dict[str, Any] = describe(model)
    except PropensityModelError as exc:  # all or none answered: the observed rate for all
        logger.warning("response propensity not fitted (%s); using the overall rate", exc)
        rate = float(np.clip(responded.mean(), 0.02, 1.0))
        prop = np.full(feats.height, rate)
        info = {"fallback_rate": rate, "reason": str(exc)}
    upd = pl.DataFrame({"survey_id": feats["survey_id"], "response_propensity": prop})
    with store.write() as cur:
        cur.register("_prop", upd.to_arrow())
        try:
            cur.execute(
                "UPDATE survey_prompts SET response_propensity = _prop.response_propensity "
                "FROM _prop WHERE survey_prompts.survey_id = _prop.survey_id"
            )
        finally:
            cur.unregister("_prop")
    return {
        "prompts_closed": feats.height,
        "response_rate": round(float(responded.mean()), 4),
        "propensity": info,
    }


def _holdout(users: pl.Series) -> np.ndarray:
    """Deterministic held-out users (a hash of the id), about :data:`HOLDOUT_SHARE` of them."""
    h = (users.cast(pl.UInt64).hash(seed=7) % 1000).to_numpy()
    return np.asarray(h < HOLDOUT_SHARE * 1000, dtype=bool)


def train_satisfaction(engine: Engine, *, l2: float = 1.0) -> dict[str, Any]:
    """Fit the satisfaction model, report calibration, impute every session, serve it."""
    svc = engine.wellbeing
    t0 = time.perf_counter()
    sessions = load_sessions(engine.store, gap_s=1800)
    if sessions.height == 0:
        return {"sessions": 0, "message": "no events yet"}
    feats = session_features(sessions, engine.state, svc.intensity)
    prompts = svc.repo.prompts()
    feats = attach_answers(feats, prompts)
    answered = feats.filter(pl.col("observed").is_not_null())
    counts: dict[str, Any] = {"sessions": feats.height, "answered_sessions": answered.height}
    counts["long_term"] = train_long_term(engine, feats, prompts, l2=l2)
    if answered.height < 20:
        counts["message"] = "fewer than 20 answered sessions; model not trained"
        return counts
    incl = answered["inclusion_probability"].fill_null(1.0).to_numpy()
    resp = answered["response_propensity"].fill_null(1.0).to_numpy()
    weights = 1.0 / np.clip(incl * resp, 1e-4, 1.0)
    weights = np.minimum(weights, np.quantile(weights, 0.99))  # trim the heaviest 1%
    y = answered["observed"].to_numpy()
    test = _holdout(answered["user_id"])
    if test.sum() < 10 or (~test).sum() < 20:
        test = np.zeros(len(y), dtype=bool)
        test[::4] = True
    train_rows = answered.filter(pl.Series(~test))
    test_rows = answered.filter(pl.Series(test))
    probe = SatisfactionModel(l2=l2).fit(train_rows, y[~test], weights=weights[~test])
    held = calibration(probe.predict(test_rows), y[test], weights=weights[test])
    baseline = float(np.average(y[~test], weights=weights[~test]))
    held["mae_constant_baseline"] = round(
        float(np.average(np.abs(y[test] - baseline), weights=weights[test])), 4
    )
    model = SatisfactionModel(l2=l2).fit(answered, y, weights=weights)
    assert model.version is not None
    predicted = model.predict(feats)
    imputed = feats.with_columns(
        pl.Series("predicted", predicted),
        pl.lit(model.version).alias("model_version"),
        pl.col("n_impressions").cast(pl.Int32),
        pl.col("n_views").cast(pl.Int32),
        pl.col("n_see_less").cast(pl.Int32),
        (pl.col("abrupt_exit") > 0).alias("abrupt_exit"),
        (pl.col("late_night") > 0).alias("late_night"),
    )
    n = svc.repo.replace_session_satisfaction(imputed)
    metrics = {
        "trained_at": datetime.now(UTC).isoformat(),
        "answered_sessions": answered.height,
        "heldout_calibration": held,
        "coefficients": model.coefficients(),
    }
    svc.repo.save_model(model.version, model.to_params(), metrics)
    svc.satisfaction.set_model(model)
    counts.update(
        {
            "imputed_sessions": n,
            "model_version": model.version,
            "heldout": {k: v for k, v in held.items() if k != "bins"},
            "calibration_bins": held["bins"],
            "mean_predicted": round(float(predicted.mean()), 4),
            "ms": round((time.perf_counter() - t0) * 1e3, 1),
        }
    )
    return counts


def train_long_term(
    engine: Engine, feats: pl.DataFrame, prompts: pl.DataFrame, *, l2: float = 1.0
) -> dict[str, Any]:
    """Fit the long-term model (the surrogate for the six-month answer) on each answer and the
    person's sessions in the eight weeks before it, report it on held-out people, serve it."""
    rows = surrogate_rows(feats, prompts)
    out: dict[str, Any] = {"answers": rows.height}
    if rows.height < 20:
        out["message"] = "fewer than 20 six-month answers with sessions before them; not trained"
        return out
    w = rows["weight"].to_numpy()
    w = np.minimum(w, np.quantile(w, 0.99))
    y = rows["answer"].to_numpy()
    test = _holdout(rows["user_id"])
    if test.sum() >= 10 and (~test).sum() >= 20:
        probe = SatisfactionModel(l2=l2, kind="long_term").fit(
            rows.filter(pl.Series(~test)), y[~test], weights=w[~test]
        )
        held = calibration(probe.predict(rows.filter(pl.Series(test))), y[test], weights=w[test])
        out["heldout"] = {k: v for k, v in held.items() if k != "bins"}
    model = SatisfactionModel(l2=l2, kind="long_term").fit(rows, y, weights=w)
    assert model.version is not None
    metrics = {
        "trained_at": datetime.now(UTC).isoformat(),
        "answers": rows.height,
        "heldout_calibration": out.get("heldout"),
        "coefficients": model.coefficients(),
    }
    engine.wellbeing.repo.save_model(model.version, model.to_params(), metrics)
    engine.wellbeing.satisfaction.set_model(model, kind="long_term")
    out["model_version"] = model.version
    return out


def run(ctx: JobContext) -> dict[str, Any]:
    """The satisfaction job (see the module docstring)."""
    engine = ctx.engine
    svc = engine.wellbeing
    expired = svc.surveys.expire(datetime.now(UTC))
    out: dict[str, Any] = {"expired_prompts": expired}
    out["response"] = fit_response_propensity(engine)
    out.update(train_satisfaction(engine, l2=float(ctx.options.get("l2", 1.0))))
    return out


def refresh(ctx: JobContext) -> dict[str, Any]:
    """Bulk re-read of what the request path holds per user (see ``WellbeingServices.refresh``):
    with several API replicas, viewing served by another replica counts within a minute."""
    return ctx.engine.wellbeing.refresh(datetime.now(UTC))


def publish_transparency(ctx: JobContext) -> dict[str, Any]:
    """Publish every completed period of the public transparency report (hash-chained)."""
    from wellbeing.transparency import entries, publish_due, verify

    eng = ctx.engine
    settings = eng.settings.wellbeing.transparency
    published = publish_due(eng.store, settings)
    chain = verify(entries(eng.store), period_days=settings.period_days)
    if not chain.ok:  # published anyway: the report itself shows the break to everyone
        logger.error("transparency log does not verify: %s", "; ".join(chain.problems))
    return {"published": len(published), "entries": chain.entries, "verified": chain.ok}
