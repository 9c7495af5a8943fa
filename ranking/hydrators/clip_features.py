"""Candidate hydrator: engagement, author, social and user x clip features from memory."""

from __future__ import annotations

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery, set_columns
from ranking.signals import Signal
from ranking.state import COUNTERS, FeedState

_C = {c: i for i, c in enumerate(COUNTERS)}
# Beta-style smoothing so a clip with 1 view and 1 like does not outrank a proven one.
PRIOR_VIEWS = 20.0
PRIOR_LIKE_RATE = 0.05
PRIOR_COMPLETION = 0.4


def _member(values: np.ndarray, members: set[int]) -> np.ndarray:
    """Boolean mask of ``values`` found in ``members`` (vectorised set membership)."""
    if not members:
        return np.zeros(len(values), dtype=bool)
    return np.isin(values, np.fromiter(members, dtype=np.int64, count=len(members)))


class ClipFeaturesHydrator:
    """Adds per-candidate feature columns (names listed in :attr:`FEATURES`).

    Data controls (``context.signals``): with friends' activity off, ``friends_engaged``,
    ``friend_cameo`` and ``remix_of_friend`` read their neutral default (0); the taste cosine
    reads the context's vector, which is already ``None`` while interaction history is off.
    """

    name = "clip_features"

    FEATURES = (
        "age_hours",
        "views_log",
        "completion_rate",
        "like_rate",
        "comment_rate",
        "remix_rate",
        "share_rate",
        "skip_rate",
        "see_less_rate",
        "report_rate",
        "velocity_log",
        "follows_author",
        "author_is_friend",
        "author_followers_log",
        "friends_engaged",
        "friend_cameo",
        "remix_of_friend",
        "user_clip_cosine",
        "is_generated",
        "maturity",
        "safety",
    )

    def __init__(self, state: FeedState) -> None:
        self.state = state

    def hydrate(self, query: FeedQuery, candidates: pl.DataFrame) -> pl.DataFrame:
        """Return the candidates with feature columns and ``author_id``/``topic``/``row``."""
        st = self.state
        ctx = query.context
        with st.lock:
            rows = st.catalogue.rows(candidates["item_id"].to_numpy())
            known = rows >= 0
            r = np.where(known, rows, 0)
            n = len(r)
            counts = st.engagement.counts[r]
            views = counts[:, _C["views"]] + st.engagement.prior_views[r]
            likes = counts[:, _C["likes"]] + st.engagement.prior_likes[r]
            denom = views + PRIOR_VIEWS
            impressions = np.maximum(counts[:, _C["impressions"]], counts[:, _C["views"]])

            def rate(col: str, prior: float = 0.0) -> np.ndarray:
                return (counts[:, _C[col]] + prior * PRIOR_VIEWS) / denom

            following = ctx.following
            friends = ctx.friends
            authors = st.catalogue.author[r]
            follows_author = _member(authors, following)
            author_friend = _member(authors, friends)
            # Per distinct author, not per candidate: a page has many clips of few creators.
            uniq, inverse = np.unique(authors, return_inverse=True)
            followers = np.fromiter(
                (len(st.graph.followers.get(a, ())) for a in uniq.tolist()), np.float64, len(uniq)
            )[inverse]
            if friends and ctx.signals.allows(Signal.FRIENDS_ACTIVITY):
                # Most candidates have no friend among their engagers: a disjointness test
                # (no set built) first, the count only for the few that do.
                engagers = st.engagement.engagers
                no_set: tuple[int, ...] = ()
                rl = r.tolist()
                friends_engaged = np.zeros(n)
                hits = [
                    i for i, x in enumerate(rl) if not friends.isdisjoint(engagers.get(x, no_set))
                ]
                for i in hits:
                    friends_engaged[i] = len(friends.intersection(engagers[rl[i]]))
                cameos = st.catalogue.cameos
                cameo = np.zeros(n, dtype=bool)
                for i, x in enumerate(rl):
                    c = cameos[x]
                    if c and not friends.isdisjoint(c):
                        cameo[i] = True
                remix_parent = st.catalogue.remix_of[r]
                parent_rows = st.catalogue.rows(remix_parent)
                has_parent = parent_rows >= 0
                remix_friend = np.zeros(n, dtype=bool)
                remix_friend[has_parent] = _member(
                    st.catalogue.author[parent_rows[has_parent]], friends
                )
            else:
                friends_engaged = np.zeros(n)
                cameo = np.zeros(n, dtype=bool)
                remix_friend = np.zeros(n, dtype=bool)
            uvec = ctx.user_vector
            if uvec is not None:
                # (one product: the engine keeps BLAS to one thread, so it never waits on a
                # BLAS thread pool; see FeedSettings.blas_threads)
                cosine = (st.catalogue.vectors[r] @ uvec).astype(np.float64)
                cosine[~st.catalogue.has_vector[r]] = 0.0
            else:
                cosine = np.zeros(n)
            topics = pl.Series("topic", st.catalogue.primary_topic[r], dtype=pl.String)
            cols = {
                "row": rows,
                "author_id": authors,
                "topic": topics,
                "age_hours": np.clip(query.now_epoch - st.catalogue.created[r], 0, None) / 3600.0,
                "views_log": np.log1p(views),
                "completion_rate": (
                    counts[:, _C["watch_frac_sum"]] + PRIOR_COMPLETION * PRIOR_VIEWS
                )
                / (counts[:, _C["views"]] + PRIOR_VIEWS),
                "like_rate": (likes + PRIOR_LIKE_RATE * PRIOR_VIEWS) / denom,
                "comment_rate": rate("comments"),
                "remix_rate": rate("remixes"),
                "share_rate": rate("shares"),
                "skip_rate": counts[:, _C["skips"]] / (impressions + PRIOR_VIEWS),
                "see_less_rate": rate("see_less"),
                "report_rate": rate("reports"),
                "velocity_log": np.log1p(st.engagement.velocity_now(query.now_epoch, r)),
                "follows_author": follows_author.astype(np.float64),
                "author_is_friend": author_friend.astype(np.float64),
                "author_followers_log": np.log1p(followers),
                "friends_engaged": friends_engaged,
                "friend_cameo": cameo.astype(np.float64),
                "remix_of_friend": remix_friend.astype(np.float64),
                "user_clip_cosine": cosine,
                "is_generated": st.catalogue.generated[r].astype(np.float64),
                "maturity": st.catalogue.maturity[r].astype(np.int64),
                "safety": st.catalogue.safety[r].astype(np.int64),
            }
        return set_columns(candidates, cols)
