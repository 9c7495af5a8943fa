"""Candidate hydrator: the author, user x author and context features of the learned ranker.

Adds the registry features that :class:`~ranking.hydrators.clip_features.ClipFeaturesHydrator`
does not compute (names in :attr:`LearnedFeaturesHydrator.FEATURES`). Author statistics come
from :meth:`ranking.state.EngagementCounters.author_stats` (refreshed by the ``author_stats``
job); the user x author affinity from the viewer's engagement history in memory; the context
from the request.

``session_depth`` is ``page * limit``: the clips served earlier in this session. A clip's slot
on the page is not known while scoring (the selector picks it afterwards), so the feature the
scorers see and the impression log records is the depth at which the page starts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import polars as pl

from features.author_stats import AUTHOR_STAT_COLUMNS
from features.registry import spec
from ranking.history import decayed_history
from ranking.pipeline import FeedQuery, set_columns
from ranking.signals import SignalGate
from ranking.state import USER_VECTOR_HALF_LIFE_S, FeedState


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_hour(now_epoch: float, timezone: str) -> float:
    """Hour of day (with fraction, 0-24) at ``now_epoch`` in an IANA time zone (UTC if unknown)."""
    local = datetime.fromtimestamp(now_epoch, tz=UTC).astimezone(_zone(timezone))
    return local.hour + local.minute / 60.0


class LearnedFeaturesHydrator:
    """Adds author, user x author and context feature columns (see :attr:`FEATURES`).

    Parameters
    ----------
    state
        The serving state (author statistics, histories, profiles).
    half_life_s
        Half-life of the user x author interaction strength.
    """

    name = "learned_features"

    FEATURES = (
        *AUTHOR_STAT_COLUMNS,
        "user_author_affinity",
        "hour_of_day",
        "session_depth",
    )

    def __init__(self, state: FeedState, *, half_life_s: float = USER_VECTOR_HALF_LIFE_S) -> None:
        self.state = state
        self.half_life_s = half_life_s

    def hydrate(self, query: FeedQuery, candidates: pl.DataFrame) -> pl.DataFrame:
        """Return the candidates with the columns of :attr:`FEATURES`."""
        st = self.state
        now = query.now_epoch
        n = candidates.height
        with st.lock:
            if "author_id" in candidates.columns:
                authors = candidates["author_id"].cast(pl.Int64).to_numpy()
            else:
                rows = st.catalogue.rows(candidates["item_id"].to_numpy())
                authors = np.where(rows >= 0, st.catalogue.author[np.maximum(rows, 0)], -1)
            cols: dict[str, np.ndarray] = {
                c: st.engagement.author_stats(authors, c, spec(c).default)
                for c in AUTHOR_STAT_COLUMNS
            }
            cols["user_author_affinity"] = self._affinity(
                query.user_id, authors, now, query.context.signals
            )
            tz = query.context.timezone
            if tz is None:  # the user hydrator did not run (a replay): read the profile
                tz = str((st.profiles.by_user.get(query.user_id) or {}).get("timezone") or "UTC")
        cols["hour_of_day"] = np.full(n, local_hour(now, tz))
        cols["session_depth"] = np.full(n, float(query.page * query.limit))
        return set_columns(
            candidates, {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}
        )

    def _affinity(
        self, user_id: int, authors: np.ndarray, now: float, signals: SignalGate
    ) -> np.ndarray:
        """log(1 + decayed positive engagement of the user with each author); lock held.

        Reads the history the data controls allow (none with interaction history off: 0, the
        feature's neutral default; no long views with watch time off).
        """
        st = self.state
        rows, w = decayed_history(st, user_id, now, signals, half_life_s=self.half_life_s)
        if not len(rows):
            return np.zeros(len(authors))
        hist_authors = st.catalogue.author[rows]
        uniq, inv = np.unique(hist_authors, return_inverse=True)
        strength = np.bincount(inv, weights=w, minlength=len(uniq))
        pos = np.searchsorted(uniq, authors).clip(0, len(uniq) - 1)
        hit = uniq[pos] == authors
        return np.log1p(np.where(hit, strength[pos], 0.0))
