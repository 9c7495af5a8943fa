"""Per-(user, candidate) features for the learned ranker, from interactions only.

One :class:`RetrieverSet` holds every model fitted on one set of interactions (EASE,
weighted-ALS collab factors, cosine item kNN, RP3beta, popularity, the friendship graph and
the tag profiles of the interacted pairs). :func:`candidate_features` draws candidates from
all of them and returns one row per (user, candidate) with the features below, so training
(fitted on a fold) and evaluation/serving (fitted on everything) share one code path.

Only the interactions given to :func:`fit_retrievers` are read: whatever is held out
(a label fold, a test split) can never leak into a feature.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from ranking.retrieval._matrix import InteractionMatrix, check_interactions
from ranking.retrieval.collab import CollabModel, fit_collab
from ranking.retrieval.ease import EaseModel, fit_ease
from ranking.retrieval.item_knn import ItemKnnModel, fit_item_knn, fit_rp3beta

logger = logging.getLogger(__name__)

#: Retrievers whose dense scores become ``<name>_score``, ``<name>_norm`` and ``<name>_rank``.
#: ``collab`` is the engine's collab model (same settings as the ``collab`` job); ``collab_alt``
#: a smaller, less regularised factorisation whose different errors the ranker can use.
SCORED_RETRIEVERS = ("ease", "collab", "collab_alt", "knn", "rp3")
#: Retrievers that contribute ``per_source`` candidates (the others ``per_minor_source``).
MAJOR_RETRIEVERS = ("ease", "collab")

#: Every feature column :func:`candidate_features` produces, in a fixed order.
FEATURE_NAMES: tuple[str, ...] = (
    *(f"{r}_{kind}" for r in SCORED_RETRIEVERS for kind in ("score", "norm", "rank")),
    "item_listeners",
    "item_log_listens_mean",
    "item_pop_rank",
    "user_items",
    "user_log_listens_mean",
    "user_mean_item_pop",
    "user_friends",
    "friends_listened",
    "friends_listened_frac",
    "friends_log_listens",
    "top_items_similarity",
    "tag_similarity",
    "item_tag_count",
)


@dataclass(frozen=True)
class CandidateConfig:
    """How many candidates each source contributes per user, and model settings."""

    per_source: int = 100
    per_minor_source: int = 50
    popular: int = 20
    top_items: int = 5
    collab_dim: int = 128
    collab_reg: float = 30.0
    collab_epochs: int = 15
    collab_alt_dim: int = 64
    collab_alt_reg: float = 5.0
    ease_lam: float = 50.0
    knn_k: int = 100


@dataclass
class RetrieverSet:
    """Every model and count fitted on one set of interactions, over one item space.

    Attributes
    ----------
    matrix : InteractionMatrix
        The raw weights (user x item) the models were fitted on.
    ease, collab, collab_alt, knn, rp3 : models
        Fitted retrievers, their score columns aligned with ``matrix.item_ids``.
    friends : sp.csr_matrix
        User x user 0/1 friendship matrix in ``matrix.user_ids`` order.
    user_tags, item_tags : sp.csr_matrix
        Row-normalised tag profiles (users x tags, items x tags) from the interacted pairs.
    config : CandidateConfig
        The settings used.
    """

    matrix: InteractionMatrix
    ease: EaseModel
    collab: CollabModel
    collab_alt: CollabModel
    knn: ItemKnnModel
    rp3: ItemKnnModel
    friends: sp.csr_matrix
    user_tags: sp.csr_matrix
    item_tags: sp.csr_matrix
    config: CandidateConfig

    def __getstate__(self) -> dict[str, object]:
        """Pickle the fitted models only (the derived counts and per-user cache are rebuilt)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_consts", "_last")}


def _friend_matrix(friendships: pl.DataFrame | None, im: InteractionMatrix) -> sp.csr_matrix:
    n = len(im.user_ids)
    if friendships is None or friendships.height == 0:
        return sp.csr_matrix((n, n), dtype=np.float64)
    rows = im.rows_for(friendships["user_id"].to_numpy())
    cols = im.rows_for(friendships["friend_id"].to_numpy())
    ok = (rows >= 0) & (cols >= 0) & (rows != cols)
    mat = sp.csr_matrix((np.ones(int(ok.sum())), (rows[ok], cols[ok])), shape=(n, n))
    mat.data = np.ones_like(mat.data)
    return mat


def _tag_profiles(
    tags: pl.DataFrame | None, interactions: pl.DataFrame, im: InteractionMatrix
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """User and item tag profiles from tag rows whose (user, item) pair is interacted."""
    n_u, n_i = len(im.user_ids), len(im.item_ids)
    if tags is None or tags.height == 0:
        return sp.csr_matrix((n_u, 1)), sp.csr_matrix((n_i, 1))
    pairs = interactions.select("user_id", "item_id").unique()
    kept = tags.select("user_id", "item_id", "tag_id").join(
        pairs, on=["user_id", "item_id"], how="semi"
    )
    if kept.height == 0:
        return sp.csr_matrix((n_u, 1)), sp.csr_matrix((n_i, 1))
    tag_codes, tag_col = np.unique(kept["tag_id"].to_numpy(), return_inverse=True)
    n_t = len(tag_codes)
    u = im.rows_for(kept["user_id"].to_numpy())
    i = np.array([im.item_index.get(int(x), -1) for x in kept["item_id"].to_numpy()])
    user_tags = sp.csr_matrix((np.ones(len(u)), (u, tag_col)), shape=(n_u, n_t))
    item_tags = sp.csr_matrix((np.ones(len(i)), (i, tag_col)), shape=(n_i, n_t))

    def normalise(m: sp.csr_matrix) -> sp.csr_matrix:
        m = m.tocsr()
        m.data = np.log1p(m.data)
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        return sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ m)

    return normalise(user_tags), normalise(item_tags)


def fit_retrievers(
    interactions: pl.DataFrame,
    *,
    friendships: pl.DataFrame | None = None,
    tags: pl.DataFrame | None = None,
    config: CandidateConfig | None = None,
    seed: int = 0,
) -> RetrieverSet:
    """Fit every retriever and count on ``interactions`` alone.

    Parameters
    ----------
    interactions : pl.DataFrame
        ``user_id, item_id, weight`` rows (weight = engagement strength, e.g. listens).
    friendships : pl.DataFrame, optional
        ``user_id, friend_id`` rows (both directions for a symmetric graph).
    tags : pl.DataFrame, optional
        ``user_id, item_id, tag_id`` rows; only those whose (user, item) pair is in
        ``interactions`` are used.
    config : CandidateConfig, optional
        Candidate counts and model settings.
    seed : int
        Seed for the collab factors.

    Returns
    -------
    RetrieverSet
    """
    check_interactions(interactions)
    cfg = config or CandidateConfig()
    start = time.perf_counter()
    im = InteractionMatrix.from_frame(interactions)
    items = im.item_ids
    ease = fit_ease(interactions, lam=cfg.ease_lam, item_ids=items)
    collab = fit_collab(
        interactions,
        dim=cfg.collab_dim,
        reg=cfg.collab_reg,
        epochs=cfg.collab_epochs,
        seed=seed,
        item_ids=items,
    )
    collab_alt = fit_collab(
        interactions,
        dim=cfg.collab_alt_dim,
        reg=cfg.collab_alt_reg,
        epochs=cfg.collab_epochs,
        seed=seed + 1,
        item_ids=items,
    )
    knn = fit_item_knn(interactions, k=cfg.knn_k, item_ids=items)
    rp3 = fit_rp3beta(interactions, alpha=1.0, beta=0.3, item_ids=items)
    user_tags, item_tags = _tag_profiles(tags, interactions, im)
    logger.info(
        "retrievers fit users=%d items=%d ms=%.0f",
        len(im.user_ids),
        len(items),
        1000 * (time.perf_counter() - start),
    )
    return RetrieverSet(
        matrix=im,
        ease=ease,
        collab=collab,
        collab_alt=collab_alt,
        knn=knn,
        rp3=rp3,
        friends=_friend_matrix(friendships, im),
        user_tags=user_tags,
        item_tags=item_tags,
        config=cfg,
    )


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of every entry within its row (highest score is rank 1)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(
        ranks, order, np.arange(1, scores.shape[1] + 1)[None, :].repeat(len(scores), 0), axis=1
    )
    return ranks


def _top_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of each row's top ``k`` finite, positive-rank entries."""
    mask = np.zeros(scores.shape, dtype=bool)
    k = min(k, scores.shape[1])
    if k <= 0:
        return mask
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    np.put_along_axis(mask, top, True, axis=1)
    return np.asarray(mask & np.isfinite(scores))


@dataclass
class _Consts:
    """Per-item and per-user counts of a :class:`RetrieverSet` (computed once per set)."""

    binary: sp.csr_matrix
    logx: sp.csr_matrix
    listeners: np.ndarray
    item_log_mean: np.ndarray
    pop_order: np.ndarray
    pop_rank: np.ndarray
    user_items: np.ndarray
    user_log_mean: np.ndarray
    user_mean_pop: np.ndarray
    user_friends: np.ndarray
    item_tag_count: np.ndarray
    top_items: sp.csr_matrix


def _consts(retrievers: RetrieverSet) -> _Consts:
    cached = retrievers.__dict__.get("_consts")
    if isinstance(cached, _Consts):
        return cached
    x = retrievers.matrix.matrix
    binary = x.copy()
    binary.data = np.ones_like(binary.data)
    logx = x.copy()
    logx.data = np.log1p(logx.data)
    listeners = np.asarray(binary.sum(axis=0)).ravel()
    pop_order = np.argsort(-listeners, kind="stable")
    pop_rank = np.empty(len(listeners), dtype=np.float64)
    pop_rank[pop_order] = np.arange(1, len(listeners) + 1)
    user_items = np.asarray(binary.sum(axis=1)).ravel()
    out = _Consts(
        binary=binary,
        logx=logx,
        listeners=listeners,
        item_log_mean=np.asarray(logx.sum(axis=0)).ravel() / np.maximum(listeners, 1.0),
        pop_order=pop_order,
        pop_rank=pop_rank,
        user_items=user_items,
        user_log_mean=np.asarray(logx.sum(axis=1)).ravel() / np.maximum(user_items, 1.0),
        user_mean_pop=np.asarray(binary @ listeners).ravel() / np.maximum(user_items, 1.0),
        user_friends=np.asarray(retrievers.friends.sum(axis=1)).ravel(),
        item_tag_count=np.asarray((retrievers.item_tags > 0).sum(axis=1)).ravel(),
        # The user's most-listened items, for the "similar to your favourites" feature.
        top_items=_top_items_matrix(x, retrievers.config.top_items),
    )
    retrievers.__dict__["_consts"] = out
    return out


@dataclass
class _Blocks:
    """Dense scores of some users (rows) over every item, and what the features read."""

    rows: np.ndarray
    seen: np.ndarray
    scores: dict[str, np.ndarray]
    f_count: np.ndarray
    f_log: np.ndarray
    sim_top: np.ndarray
    tag_sim: np.ndarray


def _blocks(retrievers: RetrieverSet, c: _Consts, rows: np.ndarray) -> _Blocks:
    seen = c.binary[rows].toarray() > 0
    scores: dict[str, np.ndarray] = {}
    for name in SCORED_RETRIEVERS:
        block = getattr(retrievers, name).score_rows(rows)
        block[seen] = -np.inf
        scores[name] = block
    friend_rows = retrievers.friends[rows]
    return _Blocks(
        rows=rows,
        seen=seen,
        scores=scores,
        f_count=np.asarray((friend_rows @ c.binary).todense()),
        f_log=np.asarray((friend_rows @ c.logx).todense()),
        sim_top=np.asarray((c.top_items[rows] @ retrievers.knn.similarity).todense()),
        tag_sim=np.asarray((retrievers.user_tags[rows] @ retrievers.item_tags.T).todense()),
    )


def _candidate_mask(retrievers: RetrieverSet, c: _Consts, b: _Blocks) -> np.ndarray:
    """Each retriever's top items, friends' items and the most popular, never a seen item."""
    cfg = retrievers.config
    mask = np.zeros(b.seen.shape, dtype=bool)
    for name in SCORED_RETRIEVERS:
        k = cfg.per_source if name in MAJOR_RETRIEVERS else cfg.per_minor_source
        mask |= _top_mask(b.scores[name], k)
    f_scored = np.where(b.seen, -np.inf, b.f_count + 1e-3 * b.f_log)
    mask |= _top_mask(np.where(b.f_count > 0, f_scored, -np.inf), cfg.per_minor_source)
    mask[:, c.pop_order[: cfg.popular + int(c.user_items[b.rows].max())]] = True
    mask &= ~b.seen
    return mask


def _features_at(
    c: _Consts, b: _Blocks, r_idx: np.ndarray, c_idx: np.ndarray
) -> dict[str, np.ndarray]:
    """Every column of :data:`FEATURE_NAMES` at (block row, item column) pairs."""
    cols: dict[str, np.ndarray] = {}
    for name in SCORED_RETRIEVERS:
        block = b.scores[name]
        finite = np.isfinite(block)
        row_max = np.max(np.where(finite, block, -np.inf), axis=1, keepdims=True)
        row_max = np.where(np.isfinite(row_max) & (row_max > 0), row_max, 1.0)
        vals = block[r_idx, c_idx]
        ok = np.isfinite(vals)
        # rank = 1 + entries scoring higher (what a full sort gives, without sorting every item)
        ranks = _ranks_at(np.where(finite, block, -np.inf), r_idx, c_idx)
        cols[f"{name}_score"] = np.where(ok, vals, np.nan)
        cols[f"{name}_norm"] = np.where(ok, vals / row_max[r_idx, 0], np.nan)
        cols[f"{name}_rank"] = np.where(ok, ranks, np.nan)
    u_rows = b.rows[r_idx]
    n_friends = c.user_friends[u_rows]
    cols["item_listeners"] = c.listeners[c_idx]
    cols["item_log_listens_mean"] = c.item_log_mean[c_idx]
    cols["item_pop_rank"] = c.pop_rank[c_idx]
    cols["user_items"] = c.user_items[u_rows]
    cols["user_log_listens_mean"] = c.user_log_mean[u_rows]
    cols["user_mean_item_pop"] = c.user_mean_pop[u_rows]
    cols["user_friends"] = n_friends
    cols["friends_listened"] = b.f_count[r_idx, c_idx]
    cols["friends_listened_frac"] = b.f_count[r_idx, c_idx] / np.maximum(n_friends, 1.0)
    cols["friends_log_listens"] = b.f_log[r_idx, c_idx]
    cols["top_items_similarity"] = b.sim_top[r_idx, c_idx]
    cols["tag_similarity"] = b.tag_sim[r_idx, c_idx]
    cols["item_tag_count"] = c.item_tag_count[c_idx]
    return cols


def _ranks_at(scores: np.ndarray, r_idx: np.ndarray, c_idx: np.ndarray) -> np.ndarray:
    """1-based rank (stable: ties by column) of the given entries within their rows.

    For one row (a served page) it counts instead of ranking every item: rank = 1 + the
    entries scoring higher + the equal entries in earlier columns, which is what the stable
    sort of :func:`_ranks` gives (training uses that; a test checks both agree).
    """
    if scores.shape[0] != 1:
        return np.asarray(_ranks(scores)[r_idx, c_idx], dtype=np.float64)
    row = scores[0]
    asc = np.sort(row)
    vals = row[c_idx]
    higher = len(row) - np.searchsorted(asc, vals, side="right")
    ties = np.searchsorted(asc, vals, side="right") - np.searchsorted(asc, vals, side="left")
    earlier = np.zeros(len(vals), dtype=np.int64)
    tied = np.flatnonzero(ties > 1)
    if len(tied):
        for v in np.unique(vals[tied]):
            before = np.cumsum(row == v) - (row == v)  # equal entries in earlier columns
            pick = tied[vals[tied] == v]
            earlier[pick] = before[c_idx[pick]]
    return np.asarray(1 + higher + earlier, dtype=np.float64)


def candidate_features(
    retrievers: RetrieverSet,
    user_ids: Sequence[int] | np.ndarray,
    *,
    batch_size: int = 256,
) -> pl.DataFrame:
    """Candidates and their features for each user.

    Candidates are the union of each scored retriever's top items, the items most listened
    to by the user's friends and the most popular items, never an item the user already
    has in the fitted interactions.

    Parameters
    ----------
    retrievers : RetrieverSet
        Models fitted on the interactions features may read.
    user_ids : sequence of int
        Users to build candidates for (users unknown to the retrievers get none).
    batch_size : int
        Users processed at once (bounds memory: about ``12 * batch * n_items`` floats).

    Returns
    -------
    pl.DataFrame
        ``user_id, item_id`` plus every column of :data:`FEATURE_NAMES`
        (``float32``, ``nan`` where a retriever cannot score the item).
    """
    start = time.perf_counter()
    im = retrievers.matrix
    c = _consts(retrievers)
    wanted = im.rows_for(user_ids)
    rows_all = wanted[wanted >= 0]
    frames: list[pl.DataFrame] = []
    for s in range(0, len(rows_all), batch_size):
        b = _blocks(retrievers, c, rows_all[s : s + batch_size])
        r_idx, c_idx = np.nonzero(_candidate_mask(retrievers, c, b))
        cols: dict[str, np.ndarray] = {
            "user_id": im.user_ids[b.rows][r_idx].astype(np.int64),
            "item_id": im.item_ids[c_idx].astype(np.int64),
            **_features_at(c, b, r_idx, c_idx),
        }
        frames.append(pl.DataFrame(cols).with_columns(pl.col(list(FEATURE_NAMES)).cast(pl.Float32)))
    if not frames:
        schema: dict[str, pl.DataType] = {"user_id": pl.Int64(), "item_id": pl.Int64()}
        schema |= {f: pl.Float32() for f in FEATURE_NAMES}
        return pl.DataFrame(schema=schema)
    out = pl.concat(frames)
    logger.info(
        "candidate features users=%d rows=%d ms=%.0f",
        len(rows_all),
        out.height,
        1000 * (time.perf_counter() - start),
    )
    return out


def _user_blocks(retrievers: RetrieverSet, c: _Consts, row: int) -> _Blocks:
    """One user's blocks; the last user's are kept, as a page's source and hydrator both
    read them (one tuple assignment: a concurrent page for someone else just recomputes)."""
    last = retrievers.__dict__.get("_last")
    if last is not None and last[0] == row:
        blocks: _Blocks = last[1]
        return blocks
    blocks = _blocks(retrievers, c, np.asarray([row]))
    retrievers.__dict__["_last"] = (row, blocks)
    return blocks


def user_candidates(retrievers: RetrieverSet, user_id: int) -> tuple[np.ndarray, np.ndarray]:
    """One user's candidates (item ids) and a source score (the EASE score, normalised).

    The same candidates :func:`candidate_features` draws for the user; none for a user the
    retrievers do not know.
    """
    row = retrievers.matrix.user_index.get(int(user_id))
    if row is None:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    c = _consts(retrievers)
    b = _user_blocks(retrievers, c, row)
    c_idx = np.flatnonzero(_candidate_mask(retrievers, c, b)[0])
    ease = b.scores["ease"][0, c_idx]
    return (
        retrievers.matrix.item_ids[c_idx].astype(np.int64),
        np.where(np.isfinite(ease), ease, 0.0).astype(np.float64),
    )


def features_for_items(
    retrievers: RetrieverSet, user_id: int, item_ids: np.ndarray
) -> dict[str, np.ndarray]:
    """Every column of :data:`FEATURE_NAMES` for one user and the given items (serving).

    The same numbers :func:`candidate_features` gives the pair; ``nan`` for an item the
    retrievers do not know, every column ``nan`` for an unknown user (the registry's
    defaults then stand in).
    """
    n = len(item_ids)
    row = retrievers.matrix.user_index.get(int(user_id))
    out = {f: np.full(n, np.nan) for f in FEATURE_NAMES}
    if row is None or n == 0:
        return out
    # the item ids are sorted (InteractionMatrix): one search instead of a lookup per item
    known_ids = retrievers.matrix.item_ids
    ids = np.asarray(item_ids, dtype=np.int64)
    pos = np.searchsorted(known_ids, ids).clip(0, max(len(known_ids) - 1, 0))
    cols = np.where(known_ids[pos] == ids, pos, -1) if len(known_ids) else np.full(n, -1)
    if len(known_ids) > 1 and not bool(np.all(np.diff(known_ids) > 0)):  # not sorted: look up
        index = retrievers.matrix.item_index
        cols = np.fromiter((index.get(int(i), -1) for i in ids), dtype=np.int64, count=n)
    known = np.flatnonzero(cols >= 0)
    if not len(known):
        return out
    c = _consts(retrievers)
    b = _user_blocks(retrievers, c, row)
    feats = _features_at(c, b, np.zeros(len(known), dtype=np.int64), cols[known])
    for name, values in feats.items():
        out[name][known] = values
    return out


def _top_items_matrix(x: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """0/1 user x item matrix of each user's ``k`` highest-weight items."""
    x = x.tocsr()
    rows: list[int] = []
    cols: list[int] = []
    for r in range(x.shape[0]):
        lo, hi = x.indptr[r], x.indptr[r + 1]
        if hi == lo:
            continue
        order = np.argsort(-x.data[lo:hi], kind="stable")[:k]
        cols.extend(x.indices[lo:hi][order].tolist())
        rows.extend([r] * len(order))
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=x.shape)
