"""Engagement strength per (user, clip) read from the DuckDB event log.

One definition of "how much did this user want this clip", used by the collab job and the
LastFM evaluation (which imports LastFM into a store and reads it back through here), in the
spirit of :data:`ranking.state.POSITIVE_WEIGHTS`:

- a ``view`` counts its ``weight`` (a listen count for imported LastFM rows, 1 when absent)
  when it was watched to at least :data:`ranking.state.LONG_VIEW_FRACTION`;
- a ``listen`` counts its ``weight`` (1 when absent);
- ``like``, ``comment``, ``share``, ``remix`` count their positive weight;
- a pair the user reported or asked to see less of is dropped altogether.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

import polars as pl

from ranking.state import LONG_VIEW_FRACTION, POSITIVE_WEIGHTS
from storage.store import Store, time_window

logger = logging.getLogger(__name__)

#: Event types that veto a (user, clip) pair as a positive example.
NEGATIVE_EVENTS = ("see_less", "report")

_SCHEMA = {"user_id": pl.Int64, "item_id": pl.Int64, "weight": pl.Float64}


def _strength_sql() -> str:
    """SQL ``CASE`` giving one event's engagement strength (0 for a non-positive event)."""
    cases = [
        f"WHEN event_type = 'view' AND coalesce(watch_frac, 0) >= {LONG_VIEW_FRACTION} "
        "THEN coalesce(weight, 1.0)",
        "WHEN event_type = 'listen' THEN coalesce(weight, 1.0)",
    ]
    cases += [
        f"WHEN event_type = '{name}' THEN {float(w)}"
        for name, w in POSITIVE_WEIGHTS.items()
        if name != "follow"  # a follow targets a user, not a clip
    ]
    return "CASE " + " ".join(cases) + " ELSE 0.0 END"


def engagement_from_events(
    store: Store, *, since: datetime | None = None, until: datetime | None = None
) -> pl.DataFrame:
    """Summed positive engagement per (user, clip) from the event log.

    Parameters
    ----------
    store : Store
        The DuckDB store holding ``events``.
    since, until : datetime, optional
        Only events with ``since <= ts < until``.

    Returns
    -------
    pl.DataFrame
        ``user_id, item_id, weight`` (Int64, Int64, Float64), one row per pair with a positive
        strength and no negative event, sorted by user then clip.
    """
    start = time.perf_counter()
    window, params = time_window(since, until)
    where = ["item_id IS NOT NULL", *window]
    # HAVING names the sum, not its alias: on PostgreSQL "weight" there is the events column.
    sql = f"""
        SELECT user_id, item_id, sum({_strength_sql()}) AS weight
        FROM events
        WHERE {" AND ".join(where)}
        GROUP BY user_id, item_id
        HAVING sum({_strength_sql()}) > 0
           AND count(*) FILTER (WHERE list_contains(?::VARCHAR[], event_type)) = 0
        ORDER BY user_id, item_id
    """  # noqa: S608
    frame = store.query(sql, [*params, list(NEGATIVE_EVENTS)])
    out = (
        frame.select(
            pl.col("user_id").cast(pl.Int64),
            pl.col("item_id").cast(pl.Int64),
            pl.col("weight").cast(pl.Float64),
        )
        if frame.height
        else pl.DataFrame(schema=_SCHEMA)
    )
    logger.info(
        "engagement pairs=%d users=%d ms=%.0f",
        out.height,
        out["user_id"].n_unique() if out.height else 0,
        1000 * (time.perf_counter() - start),
    )
    return out
