"""Committed events decoded once for every part of the serving state, and the log replay.

:meth:`ranking.state.FeedState.apply_events` decodes a batch of events into an
:class:`EventBatch` (clip rows looked up once, one mask per event type, the positive-engagement
strength of each event) and hands it to each part that keeps a share of the log: the social
graph (follow events), the engagement counters and the user activity. :func:`replay_events`
streams the store's event log through such a handler, which is how a part is rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from ranking.state.frames import epoch_col, float_col
from storage.store import EVENT_TYPES, Store

COUNTERS = (
    "impressions",
    "views",
    "watch_frac_sum",
    "likes",
    "comments",
    "remixes",
    "shares",
    "follows",
    "skips",
    "see_less",
    "reports",
)
#: The counter each event type adds to (``listen`` has none: it only adds engagement).
EVENT_TO_COUNTER = {
    "impression": "impressions",
    "view": "views",
    "like": "likes",
    "comment": "comments",
    "remix": "remixes",
    "share": "shares",
    "follow": "follows",
    "skip": "skips",
    "see_less": "see_less",
    "report": "reports",
}
# How much each event says "I want more like this" (used for user vectors and velocity).
POSITIVE_WEIGHTS = {"like": 1.0, "comment": 1.0, "share": 1.5, "remix": 2.0, "follow": 1.0}
LONG_VIEW_FRACTION = 0.6
# A skip before this fraction of the clip is a quick skip (a skip with no fraction is not).
QUICK_SKIP_FRACTION = 0.2
#: The columns of the event log the state reads.
EVENT_LOG_COLUMNS = "user_id, item_id, target_user_id, event_type, ts, watch_frac, weight"


@dataclass(frozen=True)
class EventBatch:
    """A batch of committed events, decoded for the parts.

    ``follows`` holds every follow event that names its target; the other arrays hold only the
    events on a clip the catalogue knows, in batch order.
    """

    follows: list[tuple[int, int]]
    users: np.ndarray
    item_ids: np.ndarray
    rows: np.ndarray
    masks: dict[str, np.ndarray]
    strength: np.ndarray
    watch_frac: np.ndarray
    times: np.ndarray
    quick_skip: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    @classmethod
    def decode(
        cls, events: pl.DataFrame, rows_of: Callable[[np.ndarray], np.ndarray]
    ) -> EventBatch:
        """Decode ``events`` (``rows_of`` maps clip ids to catalogue rows, -1 for unknown)."""
        cols = events.columns
        types = events["event_type"]
        follows: list[tuple[int, int]] = []
        if "target_user_id" in cols:
            f = events.filter(
                (types == "follow").to_numpy() & events["target_user_id"].is_not_null().to_numpy()
            )
            follows = list(zip(f["user_id"].to_list(), f["target_user_id"].to_list(), strict=True))
        if "item_id" not in cols:
            return cls.without_clips(follows)
        item_s = events["item_id"]
        item_ids = item_s.fill_null(-1).to_numpy().astype(np.int64)
        rows = rows_of(item_ids)
        if item_s.null_count():
            rows[item_s.is_null().to_numpy()] = -1
        known = rows >= 0
        if not known.any():
            return cls.without_clips(follows)
        masks = {t: (types == t).to_numpy()[known] for t in EVENT_TYPES}
        strength = np.zeros(int(known.sum()))
        for et, w in POSITIVE_WEIGHTS.items():
            strength[masks[et]] = w
        weights = float_col(events, "weight")[known]
        frac = float_col(events, "watch_frac")[known]
        view, listen = masks["view"], masks["listen"]
        if view.any():
            scale = np.where(weights != 0.0, np.log1p(np.where(weights != 0.0, weights, 0)), 1)
            strength[view] = (scale * np.where(frac >= LONG_VIEW_FRACTION, frac, 0.0))[view]
        if listen.any():
            strength[listen] = np.log1p(np.where(weights != 0.0, weights, 1.0))[listen]
        # A skip with no watch fraction is not a quick one.
        skip_frac = (
            events["watch_frac"].cast(pl.Float64).fill_null(1.0).to_numpy()[known]
            if "watch_frac" in cols
            else np.ones(int(known.sum()))
        )
        return cls(
            follows=follows,
            users=events["user_id"].to_numpy()[known],
            item_ids=item_ids[known],
            rows=rows[known],
            masks=masks,
            strength=strength,
            watch_frac=frac,
            times=epoch_col(events, "ts")[known],
            quick_skip=masks["skip"] & (skip_frac < QUICK_SKIP_FRACTION),
        )

    @classmethod
    def without_clips(cls, follows: list[tuple[int, int]]) -> EventBatch:
        """A batch with no event on a known clip."""
        empty_i, empty_f = np.zeros(0, dtype=np.int64), np.zeros(0)
        return cls(follows, empty_i, empty_i, empty_i, {}, empty_f, empty_f, empty_f)

    @property
    def positive(self) -> np.ndarray:
        """Mask of the events that count as positive engagement (strength > 0)."""
        return self.strength > 0


def replay_events(
    store: Store,
    apply: Callable[[pl.DataFrame], None],
    *,
    batch_rows: int = 1_000_000,
    up_to_seq: int | None = None,
) -> None:
    """Stream the store's event log in time order through ``apply`` (in batches); with
    ``up_to_seq``, only the events numbered that or lower (and those logged before numbering)."""
    where = "" if up_to_seq is None else f" WHERE seq IS NULL OR seq <= {int(up_to_seq)}"
    sql = f"SELECT {EVENT_LOG_COLUMNS} FROM events{where} ORDER BY ts"  # noqa: S608
    for batch in store.query_batches(sql, batch_rows=batch_rows):
        apply(batch)
