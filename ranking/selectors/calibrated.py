"""Selector: a calibrated page (Steck, "Calibrated recommendations", RecSys 2018).

The page's topic mix follows the user's interest mix (:class:`~ranking.query_hydrators.
topic_mix.TopicMix`) with room to explore: each slot takes the clip that maximises

    (1 - weight) * relevance(clip) - weight * limit * KL(p~ || q~(page + clip))

where relevance is the score min-max scaled over the pool (Steck's objective sums relevance
over the list, so the divergence is counted per slot here: otherwise a page of 20 lets the
relevance of a strong topic outweigh any divergence, and a 30%-finance user got 7 finance
clips of 10), ``p~ = (1 - explore) * p +
explore * uniform`` over the pool's topics (the room to explore), and ``q~ = (1 - 0.01) * q +
0.01 * p~`` is the page's topic mix, smoothed so the divergence stays finite (Steck's alpha).
Without a mix (no history yet, or a mood steers the page) the wrapped selector picks.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery, Selector
from ranking.query_hydrators.topic_mix import TopicMix

_SMOOTH = 0.01


def calibration_kl(
    target: dict[str, float], topics: list[str], *, smooth: float = _SMOOTH
) -> float:
    """KL(p || q~) of a page's topics ``topics`` against the mix ``target`` (Steck's
    miscalibration; 0 = the page follows the mix exactly)."""
    if not target or not topics:
        return 0.0
    counts = Counter(topics)
    n = len(topics)
    kl = 0.0
    for t, p in target.items():
        if p <= 0:
            continue
        q = (1 - smooth) * counts.get(t, 0) / n + smooth * p
        kl += p * math.log(p / q)
    return kl


class CalibratedSelector:
    """Greedy calibrated top-k with an author cap (see the module docstring); wraps the
    selector used when there is no mix to follow.

    Parameters
    ----------
    inner
        Picks the page when the request has no :class:`TopicMix` (or calibration is off).
    weight
        Steck's lambda: 0 ranks by score only, 1 by calibration only. On the tuning users of
        ``steerfeed eval feedback``: KL 0.180 / 0.149 / 0.125 at 0.2 / 0.3 / 0.5 (see-less
        drop 0.83 / 0.81 / 0.79); 0.3 still served a 30%-finance user 5 finance clips of 10
        when finance scored highest (tests/ranking/test_calibrated_selector.py), so 0.5.
    explore
        Share of the target spread evenly over the pool's topics.
    pool_size
        Best-scored candidates considered.
    max_per_author
        At most this many clips of one creator per page.
    """

    name = "calibrated"

    def __init__(
        self,
        inner: Selector,
        *,
        weight: float = 0.5,
        explore: float = 0.1,
        pool_size: int = 1000,
        max_per_author: int = 2,
    ) -> None:
        if not 0.0 <= weight <= 1.0 or not 0.0 <= explore <= 1.0:
            msg = f"weight and explore must lie in [0, 1], got {weight} and {explore}"
            raise ValueError(msg)
        self.inner = inner
        self.weight = weight
        self.explore = explore
        self.pool_size = pool_size
        self.max_per_author = max_per_author

    def enabled_for(self, query: FeedQuery) -> TopicMix | None:
        """The mix this request is calibrated to (``None``: the wrapped selector picks)."""
        mix = query.context.get(TopicMix)
        return mix if mix is not None and mix.calibrate and mix.shares else None

    def target(self, mix: TopicMix, pool_topics: list[str]) -> dict[str, float]:
        """``p~``: the mix with ``explore`` (and the mix's free share) spread over the pool's
        topics, less onto a topic the user gave negative feedback on (``exp(-0.3 *
        negative)``, as in the mix); sums to 1."""
        cats = set(pool_topics) | set(mix.shares)
        room = {t: math.exp(-0.3 * mix.against.get(t, 0.0)) for t in cats}
        total = sum(room.values())
        spread = self.explore + (1 - self.explore) * mix.free  # what negative feedback freed
        return {
            t: (1 - self.explore) * mix.shares.get(t, 0.0) + spread * room[t] / total for t in cats
        }

    def select(self, query: FeedQuery, candidates: pl.DataFrame) -> pl.DataFrame:
        """Return at most ``query.limit`` rows in page order (input is sorted by score)."""
        mix = self.enabled_for(query)
        if mix is None or candidates.height == 0:
            return self.inner.select(query, candidates)
        pool = candidates.head(self.pool_size)
        topics = [t or "" for t in pool["topic"].to_list()]
        authors = pool["author_id"].to_list()
        score = pool["score"].cast(pl.Float64).to_numpy()
        span = float(score.max() - score.min())
        rel = (score - score.min()) / span if span > 1e-12 else np.ones(len(score))
        p = self.target(mix, topics)
        # Each topic's candidates in score order; a pointer per topic to its best one left.
        by_topic: dict[str, list[int]] = {}
        for i, t in enumerate(topics):
            by_topic.setdefault(t, []).append(i)
        nxt = dict.fromkeys(by_topic, 0)
        per_author: Counter[int] = Counter()
        # The divergence after adding a clip of topic t differs from the page's own only in
        # t's term: KL_t = K0 + p_t * (log(base_t) - log(base_t + (1 - s) / n)), with
        # base = (1 - s) * counts / n + s * p, so a slot costs O(topics), not O(topics^2).
        cats = list(p)
        col = {t: j for j, t in enumerate(cats)}
        pv = np.asarray([p[t] for t in cats], dtype=np.float64)
        pos = pv > 0
        counts = np.zeros(len(cats))
        chosen: list[int] = []
        lam = self.weight
        per_slot = float(query.limit)
        while len(chosen) < query.limit:
            n = len(chosen) + 1
            base = (1 - _SMOOTH) * counts / n + _SMOOTH * pv
            k0 = float(np.sum(pv[pos] * np.log(pv[pos] / base[pos])))
            step = (1 - _SMOOTH) / n
            best, best_v = -1, -math.inf
            for t, idx in by_topic.items():
                k = nxt[t]
                while k < len(idx) and per_author[authors[idx[k]]] >= self.max_per_author:
                    k += 1
                nxt[t] = k
                if k == len(idx):
                    continue
                i = idx[k]
                j = col[t]
                pj = pv[j]
                kl = k0 + (pj * math.log(base[j] / (base[j] + step)) if pj > 0 else 0.0)
                v = (1 - lam) * float(rel[i]) - lam * per_slot * kl
                if v > best_v:
                    best, best_v = i, v
            if best < 0:
                break
            chosen.append(best)
            nxt[topics[best]] += 1
            per_author[authors[best]] += 1
            counts[col[topics[best]]] += 1
        return pool[chosen]
