"""Per-author statistics for the learned ranker: follower growth, engagement rate, credibility.

One function, :func:`compute_author_stats`, computes them as of a moment from the follow edges
and the event log, using only what happened up to that moment. The ``author_stats`` job runs it
over the store and hands the result to
:meth:`ranking.state.EngagementCounters.set_author_stats`; the feature replay runs it over a log
prefix, so a replayed impression sees the values the job would have served then.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

import numpy as np
import polars as pl
from scipy import sparse

logger = logging.getLogger(__name__)

AUTHOR_STAT_COLUMNS = (
    "author_follower_growth_7d",
    "author_engagement_rate",
    "author_credibility",
)
POSITIVE_EVENTS = ("like", "comment", "share", "remix", "follow")
LONG_VIEW_FRACTION = 0.6
ENGAGEMENT_PRIOR_IMPRESSIONS = 20.0
ENGAGEMENT_PRIOR_RATE = 0.05


def follow_edges(follows: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """Follow edges with the time each was first seen: the follows table plus follow events.

    Parameters
    ----------
    follows
        ``follower_id``, ``followee_id`` and optionally ``created_at``.
    events
        Events with ``event_type``, ``user_id``, ``target_user_id`` and ``ts``.

    Returns
    -------
    polars.DataFrame
        ``follower_id``, ``followee_id``, ``ts`` (Datetime us), one row per edge.
    """
    ts = (
        pl.col("created_at").cast(pl.Datetime("us"))
        if "created_at" in follows.columns
        else pl.lit(datetime(1970, 1, 1)).cast(pl.Datetime("us"))
    )
    table = follows.select(
        pl.col("follower_id").cast(pl.Int64), pl.col("followee_id").cast(pl.Int64), ts.alias("ts")
    )
    parts = [table]
    if events.height and "target_user_id" in events.columns:
        parts.append(
            events.filter(
                (pl.col("event_type") == "follow") & pl.col("target_user_id").is_not_null()
            ).select(
                pl.col("user_id").cast(pl.Int64).alias("follower_id"),
                pl.col("target_user_id").cast(pl.Int64).alias("followee_id"),
                pl.col("ts").cast(pl.Datetime("us")),
            )
        )
    return pl.concat(parts).group_by("follower_id", "followee_id").agg(pl.col("ts").min())


def pagerank(
    src: np.ndarray, dst: np.ndarray, *, damping: float = 0.85, iters: int = 30, tol: float = 1e-9
) -> tuple[np.ndarray, np.ndarray]:
    """PageRank of the nodes of a directed graph (follower -> followee edges).

    Returns
    -------
    tuple of numpy.ndarray
        ``(node_ids, rank)`` with the rank scaled so its mean is 1 (a typical user scores 1).
    """
    if len(src) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    nodes, inv = np.unique(np.concatenate([src, dst]), return_inverse=True)
    n = len(nodes)
    s, d = inv[: len(src)], inv[len(src) :]
    out_deg = np.bincount(s, minlength=n).astype(np.float64)
    # Column-stochastic transition: rank flows from follower to followee.
    w = 1.0 / out_deg[s]
    trans = sparse.csr_matrix((w, (d, s)), shape=(n, n))
    dangling = out_deg == 0
    r = np.full(n, 1.0 / n)
    for _ in range(iters):
        nxt = damping * (trans @ r + r[dangling].sum() / n) + (1.0 - damping) / n
        done = float(np.abs(nxt - r).sum()) < tol
        r = nxt
        if done:
            break
    return nodes.astype(np.int64), r * n


def compute_author_stats(
    follows: pl.DataFrame,
    events: pl.DataFrame,
    clips: pl.DataFrame,
    *,
    now: datetime,
    growth_days: float = 7.0,
) -> pl.DataFrame:
    """Author statistics as of ``now`` from edges and events no later than ``now``.

    Parameters
    ----------
    follows
        Follow edges with first-seen times (see :func:`follow_edges`): ``follower_id``,
        ``followee_id``, ``ts``.
    events
        Event log rows with ``user_id``, ``item_id``, ``event_type``, ``ts`` and optionally
        ``watch_frac``; rows after ``now`` are ignored.
    clips
        ``item_id`` and ``author_id``.
    now
        The moment the statistics describe (naive UTC).
    growth_days
        Window of the follower-growth count.

    Returns
    -------
    polars.DataFrame
        ``author_id`` and the columns of :data:`AUTHOR_STAT_COLUMNS`.
    """
    t0 = time.perf_counter()
    now_ts = pl.lit(now).cast(pl.Datetime("us"))
    edges = follows.filter(pl.col("ts") <= now_ts)
    growth = (
        edges.filter(pl.col("ts") > now_ts - pl.duration(microseconds=int(growth_days * 86400e6)))
        .group_by(pl.col("followee_id").alias("author_id"))
        .agg(pl.len().cast(pl.Float64).log1p().alias("author_follower_growth_7d"))
    )
    ev = events.filter(pl.col("ts") <= now_ts)
    positive = pl.col("event_type").is_in(list(POSITIVE_EVENTS))
    if "watch_frac" in ev.columns:
        positive = positive | (
            (pl.col("event_type") == "view") & (pl.col("watch_frac") >= LONG_VIEW_FRACTION)
        )
    engagement = (
        ev.filter(pl.col("item_id").is_not_null())
        .join(clips.select("item_id", "author_id"), on="item_id", how="inner")
        .group_by("author_id")
        .agg(
            (pl.col("event_type") == "impression").sum().alias("imp"),
            positive.sum().alias("pos"),
        )
        .select(
            "author_id",
            (
                (pl.col("pos") + ENGAGEMENT_PRIOR_RATE * ENGAGEMENT_PRIOR_IMPRESSIONS)
                / (pl.col("imp") + ENGAGEMENT_PRIOR_IMPRESSIONS)
            ).alias("author_engagement_rate"),
        )
    )
    ids, rank = pagerank(edges["follower_id"].to_numpy(), edges["followee_id"].to_numpy())
    cred = pl.DataFrame({"author_id": ids, "author_credibility": rank})
    authors = clips.select(pl.col("author_id").cast(pl.Int64)).unique()
    out = (
        authors.join(growth, on="author_id", how="left")
        .join(engagement, on="author_id", how="left")
        .join(cred, on="author_id", how="left")
        .with_columns(
            pl.col("author_follower_growth_7d").fill_null(0.0),
            pl.col("author_engagement_rate").fill_null(ENGAGEMENT_PRIOR_RATE),
            # Nobody follows them: the PageRank floor, (1 - d) of a mean user.
            pl.col("author_credibility").fill_null(0.15),
        )
        .sort("author_id")
    )
    logger.debug(
        "author stats: %d authors, %d edges, %d events in %.0f ms",
        out.height,
        edges.height,
        ev.height,
        (time.perf_counter() - t0) * 1e3,
    )
    return out
