"""Offline evaluation of the learned ranker on LastFM hetrec-2k (the shared protocol).

Protocol (``../shared/README.md``): train on the rows of a split marked ``train`` (listen
counts as engagement, friendships as the social graph, tags only for train pairs); for each
user with test rows rank every artist the user has no train row for; NDCG@10 with binary
relevance and Recall@20 = hits / min(20, n_test), averaged over users.

``run_lastfm_eval`` runs the project's own path: the train rows are imported into a scratch
DuckDB store with the LastFM importer and read back from the event log (as the ``collab`` job
reads engagement), candidate sources and features come from
:mod:`ranking.learned.candidate_features`, and the lambdarank ranker of :mod:`ranking.learned.ltr`
orders them. In the same run it measures popularity and ALS from the ``implicit`` library (the
README's reference settings).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from pipelines.importers.errors import ImporterError
from ranking.learned.ltr import LtrConfig, rank_candidates, train_lambdarank
from ranking.retrieval._matrix import InteractionMatrix

logger = logging.getLogger(__name__)

SPLIT_FILE = "split_seed0.parquet"
TEST_FRACTION = 0.2


def _read(data_dir: Path, name: str) -> pl.DataFrame:
    path = data_dir / name
    if not path.exists():
        msg = f"LastFM file {path} is missing; expected the hetrec-2k Parquet files in {data_dir}"
        raise ImporterError(msg)
    return pl.read_parquet(path)


def make_random_split(data_dir: Path, seed: int) -> pl.DataFrame:
    """Another split made like ``split_seed0``: each row is test with probability 0.2.

    Parameters
    ----------
    data_dir : Path
        Folder with ``user_artists.parquet``.
    seed : int
        Random seed (``numpy.random.default_rng``).

    Returns
    -------
    pl.DataFrame
        ``userID, artistID, split`` with ``split`` in ``{"train", "test"}``, rows in the
        order of ``user_artists.parquet``.
    """
    ua = _read(data_dir, "user_artists.parquet").select("userID", "artistID")
    rng = np.random.default_rng(seed)
    is_test = rng.random(ua.height) < TEST_FRACTION
    return ua.with_columns(split=pl.Series(np.where(is_test, "test", "train")))


def load_split(
    data_dir: Path, split: pl.DataFrame | Path | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Train and test interactions of a split as ``user_id, item_id, weight`` frames.

    Parameters
    ----------
    data_dir : Path
        Folder with the hetrec-2k Parquet files.
    split : pl.DataFrame or Path, optional
        A split frame (``userID, artistID, split``) or file; default ``split_seed0.parquet``.

    Returns
    -------
    tuple of pl.DataFrame
        ``(train, test)``.
    """
    if split is None:
        split = data_dir / SPLIT_FILE
    split_frame = split if isinstance(split, pl.DataFrame) else pl.read_parquet(split)
    ua = _read(data_dir, "user_artists.parquet")
    rows = ua.join(split_frame, on=["userID", "artistID"], how="inner").select(
        pl.col("userID").alias("user_id"),
        pl.col("artistID").alias("item_id"),
        pl.col("weight").cast(pl.Float64),
        "split",
    )
    unknown = rows.filter(~pl.col("split").is_in(["train", "test"]))
    if unknown.height:
        msg = f"split has {unknown.height} rows whose split is not 'train' or 'test'"
        raise ImporterError(msg)
    train = rows.filter(pl.col("split") == "train").drop("split")
    test = rows.filter(pl.col("split") == "test").drop("split")
    return train, test


def load_side_data(data_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Friendships (``user_id, friend_id``) and tag rows (``user_id, item_id, tag_id``)."""
    friends = _read(data_dir, "user_friends.parquet").select(
        pl.col("userID").alias("user_id"), pl.col("friendID").alias("friend_id")
    )
    tags = _read(data_dir, "user_taggedartists.parquet").select(
        pl.col("userID").alias("user_id"),
        pl.col("artistID").alias("item_id"),
        pl.col("tagID").alias("tag_id"),
    )
    return friends, tags


def evaluate_top_k(recs: pl.DataFrame, test: pl.DataFrame) -> dict[str, float]:
    """NDCG@10 (binary relevance) and Recall@20 = hits / min(20, n_test), mean over users.

    Parameters
    ----------
    recs : pl.DataFrame
        ``user_id, item_id, rank`` (rank from 1); ranks above 20 are ignored.
    test : pl.DataFrame
        ``user_id, item_id`` held-out rows; every user in it counts (no recs = zero).

    Returns
    -------
    dict
        ``{"ndcg@10": ..., "recall@20": ..., "users": ...}``.
    """
    truth = test.select("user_id", "item_id").unique()
    n_test = truth.group_by("user_id").len("n_test")
    hits = (
        recs.filter(pl.col("rank") <= 20)
        .select("user_id", "item_id", "rank")
        .join(truth, on=["user_id", "item_id"], how="inner")
        .group_by("user_id")
        .agg(
            dcg=(1.0 / (pl.col("rank") + 1).cast(pl.Float64).log(2))
            .filter(pl.col("rank") <= 10)
            .sum(),
            hits20=pl.len(),
        )
    )
    per_user = n_test.join(hits, on="user_id", how="left").fill_null(0)
    discounts = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, 12)))])
    idcg = discounts[np.minimum(per_user["n_test"].to_numpy(), 10)]
    ndcg = per_user["dcg"].to_numpy() / idcg
    recall = per_user["hits20"].to_numpy() / np.minimum(per_user["n_test"].to_numpy(), 20)
    return {
        "ndcg@10": float(np.mean(ndcg)),
        "recall@20": float(np.mean(recall)),
        "users": float(per_user.height),
    }


def popularity_top_k(train: pl.DataFrame, user_ids: np.ndarray, *, k: int = 20) -> pl.DataFrame:
    """Most-listened-by-count artists (distinct listeners) the user has no train row for."""
    popular = (
        train.group_by("item_id")
        .agg(pl.len().alias("n"))
        .sort(["n", "item_id"], descending=[True, False])
    )
    pool = popular.head(k + int(train.group_by("user_id").len()["len"].to_numpy().max(initial=0)))
    users = pl.DataFrame({"user_id": np.asarray(user_ids, dtype=np.int64)})
    return (
        users.join(pool.select("item_id", score=pl.col("n").cast(pl.Float64)), how="cross")
        .join(train.select("user_id", "item_id"), on=["user_id", "item_id"], how="anti")
        .sort(["user_id", "score", "item_id"], descending=[False, True, False])
        .with_columns(rank=pl.int_range(1, pl.len() + 1).over("user_id"))
        .filter(pl.col("rank") <= k)
    )


def implicit_als_top_k(
    train: pl.DataFrame, user_ids: np.ndarray, *, k: int = 20, seed: int = 0, threads: int = 2
) -> pl.DataFrame:
    """The README's reference ALS: ``implicit`` 64 factors, reg 0.05, 20 iterations, BM25."""
    from implicit.als import AlternatingLeastSquares
    from implicit.nearest_neighbours import bm25_weight
    from threadpoolctl import threadpool_limits

    im = InteractionMatrix.from_frame(train)
    logged = im.matrix.copy()
    logged.data = np.log1p(logged.data)
    weighted = sp.csr_matrix(bm25_weight(logged, K1=100, B=0.8))
    # implicit parallelises itself; a threaded BLAS underneath only oversubscribes the cores.
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=64,
            regularization=0.05,
            iterations=20,
            random_state=seed,
            num_threads=threads,
        )
        model.fit(weighted, show_progress=False)
        rows = im.rows_for(user_ids)
        rows = rows[rows >= 0]
        ids, scores = model.recommend(rows, weighted[rows], N=k, filter_already_liked_items=True)
    return pl.DataFrame(
        {
            "user_id": np.repeat(im.user_ids[rows], ids.shape[1]).astype(np.int64),
            "item_id": im.item_ids[ids.ravel()].astype(np.int64),
            "score": scores.ravel().astype(np.float64),
            "rank": np.tile(np.arange(1, ids.shape[1] + 1), len(rows)).astype(np.int64),
        }
    )


def _write_top_k(recs: pl.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    recs.select(
        pl.col("user_id").cast(pl.Int64),
        pl.col("item_id").cast(pl.Int64),
        pl.col("rank").cast(pl.Int32),
    ).filter(pl.col("rank") <= 20).sort(["user_id", "rank"]).write_parquet(out)


def _split_frame(data_dir: Path, split: pl.DataFrame | Path | None) -> pl.DataFrame:
    """The split as a frame (default ``split_seed0.parquet``), checked for its columns."""
    if split is None:
        split = data_dir / SPLIT_FILE
    if isinstance(split, pl.DataFrame):
        frame = split
    else:
        if not Path(split).is_file():
            msg = f"split file not found: {split}"
            raise ImporterError(msg)
        try:
            frame = pl.read_parquet(split)
        except Exception as exc:  # polars raises several error types for a non-Parquet file
            msg = f"cannot read split file {split} as Parquet: {exc}"
            raise ImporterError(msg) from exc
    missing = [c for c in ("userID", "artistID", "split") if c not in frame.columns]
    if missing:
        msg = f"split lacks column(s) {missing}; a split has userID, artistID, split"
        raise ImporterError(msg)
    values = set(frame["split"].unique().drop_nulls().to_list())
    if not {"train", "test"} <= values or values - {"train", "test"}:
        msg = f"split values must be 'train' and 'test', got {sorted(values)}"
        raise ImporterError(msg)
    return frame


def import_train_split(
    data_dir: Path, split: pl.DataFrame, work_dir: Path
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Import the train rows into a fresh store and read them back as the engine does.

    The LastFM importer turns listens into ``view`` events (weight = listen count) and
    friendships into mutual follows; the interactions are then read from the event log with
    :func:`ranking.retrieval.engagement.engagement_from_events` (the collab job's reader) and
    the friendships from ``follows``.

    Parameters
    ----------
    data_dir : Path
        Folder with the hetrec-2k Parquet files.
    split : pl.DataFrame
        ``userID, artistID, split``.
    work_dir : Path
        Empty scratch folder for the store and the split file.

    Returns
    -------
    tuple of pl.DataFrame
        ``(interactions, friendships)``: ``user_id, item_id, weight`` and ``user_id, friend_id``.
    """
    from pipelines.importers import import_lastfm
    from ranking.retrieval.engagement import engagement_from_events
    from storage.store import Store

    split_path = work_dir / "split.parquet"
    split.select("userID", "artistID", "split").write_parquet(split_path)
    store = Store(work_dir / "steerfeed.duckdb")
    try:
        import_lastfm(store, data_dir, split_file=split_path, split="train")
        interactions = engagement_from_events(store)
        friendships = store.query(
            "SELECT follower_id AS user_id, followee_id AS friend_id FROM follows"
        ).select(pl.col("user_id").cast(pl.Int64), pl.col("friend_id").cast(pl.Int64))
    finally:
        store.close()
    return interactions, friendships


def run_lastfm_eval(
    data_dir: Path,
    *,
    split_file: Path | None = None,
    split: pl.DataFrame | None = None,
    out: Path | None = None,
    seed: int = 0,
    baselines: bool = True,
    config: LtrConfig | None = None,
) -> dict[str, Any]:
    """Train the learned ranker on a LastFM split and score it against the test rows.

    The project path: the train rows are imported into a scratch store
    (:func:`import_train_split`), read back from the event log, then candidate sources and
    features (:mod:`ranking.learned.candidate_features`) and the lambdarank ranker
    (:mod:`ranking.learned.ltr`) produce each test user's top 20.

    Parameters
    ----------
    data_dir : Path
        Folder with the hetrec-2k Parquet files.
    split_file : Path, optional
        Split to evaluate (default ``data_dir / "split_seed0.parquet"``).
    split : pl.DataFrame, optional
        A split frame instead of a file (e.g. from :func:`make_random_split`).
    out : Path, optional
        Where to write the project's top 20 per test user as Parquet
        (``user_id, item_id, rank`` in the dataset's own ids).
    seed : int
        Seed for the model fits.
    baselines : bool
        Also measure popularity and ``implicit`` ALS in this run.
    config : LtrConfig, optional
        Learned-ranker settings.

    Returns
    -------
    dict
        ``{"project": {"ndcg@10", "recall@20", "users"}, "popularity": {...},
        "als_implicit": {...}, "seconds": float, "users": int, ...}`` (the baseline keys only
        when ``baselines``).
    """
    import tempfile

    start = time.perf_counter()
    frame = _split_frame(data_dir, split if split is not None else split_file)
    _, test = load_split(data_dir, frame)
    _, tags = load_side_data(data_dir)
    with tempfile.TemporaryDirectory(prefix="steerfeed-lastfm-") as scratch:
        train, friends = import_train_split(data_dir, frame, Path(scratch))
    import_seconds = time.perf_counter() - start
    cfg = config or LtrConfig()
    test_users = test["user_id"].unique().sort().to_numpy()

    ranker = train_lambdarank(train, friendships=friends, tags=tags, config=cfg, seed=seed)
    recs = rank_candidates(
        ranker,
        train,
        test_users,
        k=20,
        friendships=friends,
        tags=tags,
        config=cfg.candidates,
        seed=seed,
    )
    result: dict[str, Any] = {"project": evaluate_top_k(recs, test)}
    project_seconds = time.perf_counter() - start
    if out is not None:
        _write_top_k(recs, out)
    if baselines:
        result["popularity"] = evaluate_top_k(popularity_top_k(train, test_users), test)
        result["als_implicit"] = evaluate_top_k(
            implicit_als_top_k(train, test_users, seed=seed, threads=cfg.threads), test
        )
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["project_seconds"] = round(project_seconds, 1)
    result["import_seconds"] = round(import_seconds, 1)
    result["users"] = len(test_users)
    result["train_rows"] = train.height
    result["test_rows"] = test.height
    result["feature_importance"] = {
        k: round(v, 1) for k, v in list(ranker.feature_importance().items())[:10]
    }
    logger.info(
        "lastfm eval users=%d ndcg@10=%.4f recall@20=%.4f ms=%.0f",
        len(test_users),
        result["project"]["ndcg@10"],
        result["project"]["recall@20"],
        1000 * (time.perf_counter() - start),
    )
    return result
