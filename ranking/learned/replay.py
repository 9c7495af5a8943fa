"""Point-in-time feature replay for logs whose impressions carry no logged features.

A log imported from elsewhere (or the demo world) has impressions but no feature JSON. This
replays the log in time order through a fresh :class:`~ranking.state.FeedState` and the serving
hydrators: before each request only the events, follows and author statistics that existed
before the request are applied, and the request's clips are hydrated exactly as serving would
have done then. The result is the feature JSON a deployed feed would have logged, so training
still reads impression-time values and nothing from after the impression leaks in.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl

from features.author_stats import AUTHOR_STAT_COLUMNS, compute_author_stats, follow_edges
from features.registry import feature_names, spec
from ranking.hydrators.clip_features import ClipFeaturesHydrator
from ranking.hydrators.learned_features import LearnedFeaturesHydrator
from ranking.pipeline import CandidateHydrator, FeedQuery
from ranking.query_hydrators.user_context import UserContextQueryHydrator
from ranking.state import FeedState, to_epoch

logger = logging.getLogger(__name__)


@dataclass
class ReplayTables:
    """What a replay reads: the store's tables as frames (vectors optional)."""

    users: pl.DataFrame
    clips: pl.DataFrame
    follows: pl.DataFrame
    blocks: pl.DataFrame
    events: pl.DataFrame
    vectors: tuple[np.ndarray, np.ndarray] | None = None


def replay_features(
    tables: ReplayTables,
    *,
    stats_every_s: float = 6 * 3600.0,
    page_size: int = 10,
    only_missing: bool = True,
) -> pl.DataFrame:
    """Return ``tables.events`` with the ``features`` JSON of impressions filled point-in-time.

    Parameters
    ----------
    tables
        Users, clips, follows, blocks and the event log (any order).
    stats_every_s
        How often (in log time) the author statistics are recomputed, as the job would.
    page_size
        Page size assumed for ``session_depth`` (requests are pages of a session).
    only_missing
        Keep features already logged; fill only impressions without them.
    """
    t0 = time.perf_counter()
    events = tables.events.with_columns(pl.col("ts").cast(pl.Datetime("us"))).sort(
        "ts", maintain_order=True
    )
    state = FeedState(dim=tables.vectors[1].shape[1] if tables.vectors is not None else 384)
    state.profiles.add_users(tables.users)
    state.add_clips(tables.clips)
    if tables.vectors is not None:
        state.set_vectors(*tables.vectors)
    state.graph.add_blocks(tables.blocks)
    edges = follow_edges(tables.follows, events).sort("ts")
    clip_authors = tables.clips.select("item_id", "author_id")

    imp = events.filter((pl.col("event_type") == "impression") & pl.col("request_id").is_not_null())
    if only_missing and "features" in imp.columns:
        imp = imp.filter(pl.col("features").is_null())
    if imp.height == 0:
        return tables.events
    reqs = (
        imp.group_by("request_id")
        .agg(
            pl.col("user_id").first(),
            pl.col("session_id").first(),
            pl.col("ts").min().alias("req_ts"),
            pl.col("item_id"),
            pl.col("source"),
            pl.col("event_id"),
            pl.col("user_id").alias("row_user_ids"),
        )
        .sort("req_ts", "request_id")
        .with_columns(
            (pl.col("req_ts").rank("ordinal").over("session_id") - 1).cast(pl.Int64).alias("page")
        )
    )
    ev_ts = events["ts"].to_numpy()
    # FeedState.apply_events reads epoch seconds directly (cheaper than a datetime per slice).
    to_apply = events.with_columns((pl.col("ts").dt.epoch("us") / 1e6).alias("ts"))
    edge_ts = edges["ts"].to_numpy()
    qh = UserContextQueryHydrator(state)
    hydrators: list[CandidateHydrator] = [
        ClipFeaturesHydrator(state),
        LearnedFeaturesHydrator(state),
    ]
    names = feature_names()
    applied, edges_applied = 0, 0
    stats_at = -np.inf
    out_ids: list[list[str]] = []
    out_users: list[int] = []
    out_feats: list[pl.DataFrame] = []
    for row in reqs.iter_rows(named=True):
        now: datetime = row["req_ts"]
        now_np = np.datetime64(now, "us")
        upto = int(np.searchsorted(ev_ts, now_np, side="left"))
        if upto > applied:
            state.apply_events(to_apply.slice(applied, upto - applied))
            applied = upto
        e_upto = int(np.searchsorted(edge_ts, now_np, side="right"))
        if e_upto > edges_applied:
            state.graph.add_follows(edges.slice(edges_applied, e_upto - edges_applied))
            edges_applied = e_upto
        epoch = to_epoch(now)
        if epoch - stats_at >= stats_every_s:
            stats = compute_author_stats(
                edges.slice(0, e_upto), events.slice(0, upto), clip_authors, now=now
            )
            state.engagement.set_author_stats(
                stats["author_id"].to_numpy(),
                {c: stats[c].to_numpy() for c in AUTHOR_STAT_COLUMNS},
                computed_at=epoch,
            )
            stats_at = epoch
        query = FeedQuery(
            user_id=int(row["user_id"]),
            limit=page_size,
            now=now,
            session_id=str(row["session_id"]),
            request_id=str(row["request_id"]),
            page=int(row["page"]),
        )
        qh.hydrate(query)
        cands = pl.DataFrame(
            {
                "item_id": pl.Series(row["item_id"], dtype=pl.Int64),
                "source_score": pl.Series([0.0] * len(row["item_id"]), dtype=pl.Float64),
                "source": pl.Series(row["source"], dtype=pl.String),
            }
        )
        for h in hydrators:
            cands = h.hydrate(query, cands)
        out_ids.append(row["event_id"])
        out_users.extend(row["row_user_ids"])
        # A feature these hydrators cannot replay (``same_city``: the request's city is not
        # kept) takes its neutral default, as a row logged without it would.
        out_feats.append(
            cands.select(
                pl.col(n).cast(pl.Float64)
                if n in cands.columns
                else pl.lit(spec(n).default, dtype=pl.Float64).alias(n)
                for n in names
            )
        )
    feats = pl.concat(out_feats)
    # event ids are unique per user (not across users): join on both
    filled = pl.DataFrame(
        {
            "user_id": pl.Series(out_users, dtype=tables.events.schema["user_id"]),
            "event_id": pl.Series([e for ids in out_ids for e in ids], dtype=pl.String),
        }
    ).with_columns(feats.select(pl.struct(names).struct.json_encode().alias("_replayed")))
    result = (
        tables.events.join(filled, on=["user_id", "event_id"], how="left", maintain_order="left")
        .with_columns(pl.coalesce("features", "_replayed").alias("features"))
        .drop("_replayed")
    )
    logger.info(
        "replayed features for %d impressions in %d requests in %.1f s",
        filled.height,
        reqs.height,
        time.perf_counter() - t0,
    )
    return result
