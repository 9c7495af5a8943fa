"""Candidate source: the best clips of each topic in the user's interest mix, in proportion."""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery
from ranking.query_hydrators.topic_mix import TopicMix
from ranking.sources._util import rows_to_candidates
from ranking.state import FeedState


class TopicMixSource:
    """For each topic of the request's :class:`TopicMix`: its best clips (decayed engagement
    velocity plus a freshness term, ranked per topic and cached for ``ttl_s``), as many as the
    topic's share of ``limit`` (at least ``min_per_topic``), skipping seen ones. A calibrated
    page can only follow the mix when each topic has candidates: a user with 42% fitness got
    one or two fitness clips a page when the other sources found few. Memory only.
    """

    name = "topic_mix"
    runs_inline = True  # memory only: run in the request thread (see CandidateSource)

    def __init__(
        self,
        state: FeedState,
        *,
        limit: int = 200,
        min_per_topic: int = 5,
        per_topic_cache: int = 300,
        ttl_s: float = 60.0,
        timeout_s: float = 0.2,
    ) -> None:
        self.state = state
        self.limit = limit
        self.min_per_topic = min_per_topic
        self.per_topic_cache = per_topic_cache
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._upto = 0
        self._rows: dict[str, list[int]] = defaultdict(list)
        self._ranked: dict[str, tuple[float, np.ndarray]] = {}

    def enabled(self, query: FeedQuery) -> bool:
        """Only for a user with an interest mix that calibration follows."""
        mix = query.context.get(TopicMix)
        return mix is not None and mix.calibrate and bool(mix.shares)

    def _best(self, topic: str, now: float) -> np.ndarray:
        st = self.state
        with self._lock:
            n = len(st.catalogue.item_ids)
            if self._upto < n:
                for r, t in enumerate(
                    st.catalogue.primary_topic[self._upto : n].tolist(), self._upto
                ):
                    if t:
                        self._rows[str(t)].append(r)
                self._upto = n
            hit = self._ranked.get(topic)
            if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
                return hit[1]
            rows = np.asarray(self._rows.get(topic, ()), dtype=np.int64)
        if rows.size:
            age_d = np.clip(now - st.catalogue.created[rows], 0.0, None) / 86400.0
            value = np.log1p(st.engagement.velocity_now(now, rows)) + 1.0 / (1.0 + age_d)
            k = min(self.per_topic_cache, rows.size)
            top = np.argpartition(-value, k - 1)[:k]
            rows = rows[top[np.argsort(-value[top], kind="stable")]]
        with self._lock:
            self._ranked[topic] = (time.monotonic(), rows)
        return rows

    def fetch(self, query: FeedQuery) -> pl.DataFrame:
        """Return each topic's share of ``limit`` best unseen clips (score: the share)."""
        st = self.state
        mix = query.context.get(TopicMix)
        if mix is None or not mix.shares:
            return rows_to_candidates(st, np.zeros(0, dtype=np.int64), np.zeros(0))
        seen = query.context.seen
        now = query.now_epoch
        out_rows: list[int] = []
        out_scores: list[float] = []
        for topic, share in mix.shares.items():
            want = max(self.min_per_topic, math.ceil(share * self.limit))
            got = 0
            for r in self._best(topic, now).tolist():
                if got >= want:
                    break
                if int(st.catalogue.item_ids[r]) in seen:
                    continue
                out_rows.append(r)
                out_scores.append(share)
                got += 1
        return rows_to_candidates(
            st, np.asarray(out_rows, dtype=np.int64), np.asarray(out_scores, dtype=np.float64)
        )
