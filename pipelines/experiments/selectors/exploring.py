"""Selector: a small epsilon-exploration over another selector, logging a propensity per slot."""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery, Selector, set_columns

#: Key, in ``query.context.experiment_records`` (logged in the impression's ``experiments`` JSON),
#: of the page's exploration record ``{"rate": r, "explored": [item ids]}``; written only when
#: the rate is > 0. The leading underscore keeps it apart from experiment names (as
#: ``_holdback`` is kept apart from arm names).
EXPLORATION_KEY = "_exploration"


class ExploringSelector:
    """Wraps a selector; each slot, top-down, keeps the wrapped selector's pick with probability
    ``1 - rate`` or, with probability ``rate``, serves a clip drawn uniformly from the other
    clips still in the exploration pool (the ``pool_size`` best-scored candidates not yet
    placed). Adds ``propensity`` (the probability, given the slots above, that this clip was
    served in this slot: ``1 - rate`` or ``rate / (m - 1)`` with ``m`` clips left, 1 when no
    other clip was left) and ``explored`` (bool) to the page, for off-policy estimates
    (:func:`~pipelines.experiments.off_policy.exploration_propensities`).

    The rate is ``query.overrides.exploration_rate`` when set (an experiment arm), else the
    configured default. The draw is seeded by the request id, so a request is reproducible.
    When the rate is > 0 the page's rate and explored item ids are written to
    ``query.context.experiment_records["_exploration"]`` (:data:`EXPLORATION_KEY`), which the
    impression log carries, so off-policy estimates know which slots were the ranker's pick
    (:mod:`pipelines.experiments.ope_log`).
    """

    name = "exploring"

    def __init__(self, inner: Selector, *, rate: float = 0.0, pool_size: int = 50) -> None:
        if not 0.0 <= rate <= 1.0:
            msg = f"exploration rate must lie in [0, 1], got {rate}"
            raise ValueError(msg)
        if pool_size < 1:
            msg = f"pool_size must be >= 1, got {pool_size}"
            raise ValueError(msg)
        self.inner = inner
        self.rate = rate
        self.pool_size = pool_size

    def select(self, query: FeedQuery, candidates: pl.DataFrame) -> pl.DataFrame:
        """Return at most ``query.limit`` rows in page order, with ``propensity``/``explored``."""
        page = self.inner.select(query, candidates)
        override = query.overrides.exploration_rate  # validated: in [0, 1]
        rate = self.rate if override is None else override
        if page.height == 0 or rate == 0.0:
            return set_columns(  # not ``with_columns``: a lazy query on every page
                page,
                {
                    "propensity": np.ones(page.height),
                    "explored": np.zeros(page.height, dtype=bool),
                },
            )
        # The ranker's order: the wrapped selector's page, then the rest by score.
        ids = candidates["item_id"].to_list()
        row_of = {int(i): r for r, i in enumerate(ids)}
        picked = [row_of[int(i)] for i in page["item_id"].to_list()]
        picked_set = set(picked)
        rest = [r for r in range(candidates.height) if r not in picked_set]
        order = picked + rest[: max(0, self.pool_size - len(picked))]
        rng = np.random.default_rng(_seed(query.request_id))
        pool = list(order)
        rows: list[int] = []
        props: list[float] = []
        explored: list[bool] = []
        for _ in range(page.height):
            if not pool:
                break
            pick = next((r for r in picked if r in pool), pool[0])
            others = [r for r in pool if r != pick]
            if others and rng.random() < rate:
                choice = others[int(rng.integers(len(others)))]
                props.append(rate / len(others))
                explored.append(True)
            else:
                choice = pick
                props.append(1.0 - rate if others else 1.0)
                explored.append(False)
            rows.append(choice)
            pool.remove(choice)
        out = candidates[rows].with_columns(
            pl.Series("propensity", props, dtype=pl.Float64),
            pl.Series("explored", explored, dtype=pl.Boolean),
        )
        # Item ids, not positions: post-selection filters may still drop rows above.
        query.context.experiment_records[EXPLORATION_KEY] = {
            "rate": rate,
            "explored": [int(ids[r]) for r, e in zip(rows, explored, strict=True) if e],
        }
        extra = [c for c in page.columns if c not in candidates.columns]
        if extra:  # columns the wrapped selector added (kept for its own picks)
            out = out.join(page.select("item_id", *extra), on="item_id", how="left")
        return out


def _seed(request_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "big")
