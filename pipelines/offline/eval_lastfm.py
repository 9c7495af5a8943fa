"""Offline evaluation of the learned ranker on LastFM hetrec-2k (the shared protocol).

Protocol (``../shared/README.md``): train on the rows of a split marked ``train`` (listen
counts as engagement, friendships as the social graph, tags only for train pairs); for each
user with test rows rank every artist the user has no train row for; NDCG@10 with binary
relevance and Recall@20 = hits / min(20, n_test), averaged over users.

``run_lastfm_eval`` measures the served home feed: the train rows are imported as a world
(artists as clips, listens as engagement, friendships as follows, train-pair tags as
captions), the server's ``train`` job trains the ranker on it, and each test user's top 20 is
the first page of :meth:`pipelines.serving.engine.Engine.feed`, with the page rules that do not
apply to this data switched off (:data:`RULES_OFF`, listed in the output). In the same run it
measures popularity, ALS from the ``implicit`` library and EASE (the README's settings).
"""

from __future__ import annotations

import logging
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from pipelines.importers.errors import ImporterError
from pipelines.importers.lastfm import LASTFM_EVENT_TS, import_lastfm
from pipelines.serving.engine import open_engine
from pipelines.serving.jobs.train import train_and_register
from pipelines.serving.settings import SteerfeedSettings
from ranking.retrieval._matrix import InteractionMatrix
from ranking.retrieval.ease import fit_ease
from storage.store import Store

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
    per_user = per_user_scores(recs, test)
    return {
        "ndcg@10": float(np.mean(per_user["ndcg"].to_numpy())),
        "recall@20": float(np.mean(per_user["recall"].to_numpy())),
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


#: Page rules that do not apply to a music-listening history, switched off for the evaluation
#: (name: why). The output JSON lists them.
RULES_OFF: dict[str, str] = {
    "exploration": "STEERFEED_EXPLORATION_RATE=0: no random slots (a page is measured once)",
    "satisfaction_head": "weight 0: no survey answers exist to fit it",
    "long_term_head": "weight 0: no weeks of usage exist to fit it",
    "governor_taper": "strength 0: no session time limits in this data",
    "surveys": "a survey card is never drawn (rate at its floor, no card is shown)",
    "max_per_author": "20: every artist is its own creator, so the cap never binds anyway",
}


def _eval_settings(data_dir: Path, threads: int) -> SteerfeedSettings:
    """Engine settings for the evaluation: the defaults with :data:`RULES_OFF` applied."""
    base = SteerfeedSettings()
    return base.model_copy(
        update={
            "storage": base.storage.model_copy(update={"data_dir": data_dir}),
            "feed": base.feed.model_copy(update={"max_per_author": 20}),
            "experiments": base.experiments.model_copy(update={"exploration_rate": 0.0}),
            "wellbeing": base.wellbeing.model_copy(
                update={
                    "satisfaction_weight": 0.0,
                    "long_term_weight": 0.0,
                    "governor_taper": 0.0,
                    "survey_rate_per_week": 1e-9,
                    "warm_on_start": False,
                }
            ),
            "train_history": base.train_history.model_copy(update={"num_threads": threads}),
        }
    )


def engine_top_k(
    data_dir: Path,
    split: pl.DataFrame,
    user_ids: np.ndarray,
    work_dir: Path,
    *,
    k: int = 20,
    threads: int = 2,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Import the train rows as a world, train through the ``train`` job, serve pages.

    Artists become clips (captioned with their tags counted over train pairs only), listens
    ``view`` events weighted by listen count, friendships mutual follows. The ``train`` job is
    the server's: with no impressions in the log it trains by the fold rule
    (:mod:`ranking.learned.history_training`) and promotes the model if it beats the
    hand-weighted scorer on people kept out of training. Each user's top ``k`` is the first
    page of :meth:`Engine.feed` with the rules of :data:`RULES_OFF` switched off.

    Returns
    -------
    tuple
        ``(recs, info)``: ``user_id, item_id, rank`` and what the job and the pages reported.
    """
    split_path = work_dir / "split.parquet"
    split.select("userID", "artistID", "split").write_parquet(split_path)
    world = work_dir / "world"
    world.mkdir()
    t0 = time.perf_counter()
    store = Store(world / "steerfeed.duckdb")
    try:
        import_lastfm(store, data_dir, split_file=split_path, split="train")
    finally:
        store.close()
    t_import = time.perf_counter() - t0
    engine = open_engine(world, _eval_settings(world, threads))
    try:
        t1 = time.perf_counter()
        job = train_and_register(engine)
        t_train = time.perf_counter() - t1
        if not job["promoted"]:
            msg = f"the trained model was not promoted: {job['gate']}"
            raise ImporterError(msg)
        version = str(job["version"])
        engine.learned.serving()  # load it (compiling starts on a thread)
        compiled = engine.learned.wait_compiled(version, timeout=600)
        now = LASTFM_EVENT_TS + timedelta(days=1)
        rows: list[tuple[int, int, int]] = []
        page_ms: list[float] = []
        sources: dict[str, int] = {}
        for uid in user_ids.tolist():
            p0 = time.perf_counter()
            page = engine.feed(int(uid), limit=k, now=now)
            page_ms.append(1000 * (time.perf_counter() - p0))
            for rank, item in enumerate(page.items, start=1):
                rows.append((int(uid), item.item_id, rank))
                sources[item.source] = sources.get(item.source, 0) + 1
    finally:
        engine.close()
    recs = pl.DataFrame(rows, schema=["user_id", "item_id", "rank"], orient="row")
    ms = np.asarray(page_ms)
    info = {
        "job": {k_: v for k_, v in job.items() if k_ in ("version", "rule", "gate", "metrics")},
        "compiled_trees": compiled,
        "import_seconds": round(t_import, 1),
        "train_seconds": round(t_train, 1),
        "page_ms": {
            "p50": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
            "p99": round(float(np.percentile(ms, 99)), 2) if len(ms) else None,
        },
        "sources_on_pages": dict(sorted(sources.items(), key=lambda kv: -kv[1])),
        "rules_off": RULES_OFF,
    }
    return recs, info


def ease_top_k(train: pl.DataFrame, user_ids: np.ndarray, *, k: int = 20) -> pl.DataFrame:
    """The README's EASE peer: binary, lambda 50, artists with >= 2 train listeners."""
    model = fit_ease(train, lam=50.0, min_listeners=2, binary=True)
    return model.recommend(user_ids, k)


def per_user_scores(recs: pl.DataFrame, test: pl.DataFrame) -> pl.DataFrame:
    """NDCG@10 and Recall@20 of every test user (zero for a user without recommendations)."""
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
    per_user = n_test.join(hits, on="user_id", how="left").fill_null(0).sort("user_id")
    discounts = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, 12)))])
    idcg = discounts[np.minimum(per_user["n_test"].to_numpy(), 10)]
    return per_user.select("user_id").with_columns(
        ndcg=pl.Series(per_user["dcg"].to_numpy() / idcg),
        recall=pl.Series(
            per_user["hits20"].to_numpy() / np.minimum(per_user["n_test"].to_numpy(), 20)
        ),
    )


def bootstrap_ci(
    values: np.ndarray, *, n: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over people (resampling people)."""
    rng = np.random.default_rng(seed)
    v = np.asarray(values, dtype=np.float64)
    means = v[rng.integers(0, len(v), size=(n, len(v)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _scored(recs: pl.DataFrame, test: pl.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = evaluate_top_k(recs, test)
    per_user = per_user_scores(recs, test)
    lo, hi = bootstrap_ci(per_user["ndcg"].to_numpy())
    out["ndcg@10_ci95"] = [round(lo, 4), round(hi, 4)]
    lo, hi = bootstrap_ci(per_user["recall"].to_numpy())
    out["recall@20_ci95"] = [round(lo, 4), round(hi, 4)]
    return out


def validation_split(frame: pl.DataFrame, *, seed: int = 12_345) -> pl.DataFrame:
    """A split made only of the train rows of ``frame``: 20% of them become the test part.

    For choosing settings: the test rows of ``frame`` are dropped, never read.
    """
    train = frame.filter(pl.col("split") == "train")
    rng = np.random.default_rng(seed)
    is_test = rng.random(train.height) < TEST_FRACTION
    return train.with_columns(split=pl.Series(np.where(is_test, "test", "train")))


def run_lastfm_eval(
    data_dir: Path,
    *,
    split_file: Path | None = None,
    split: pl.DataFrame | None = None,
    out: Path | None = None,
    seed: int = 0,
    baselines: bool = True,
    threads: int = 2,
    validation: bool = False,
) -> dict[str, Any]:
    """Measure the served home feed on a LastFM split (pages from :meth:`Engine.feed`).

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
        Seed of the random parts (bootstrap; the fits use the engine's settings).
    baselines : bool
        Also measure popularity, ``implicit`` ALS and EASE in this run.
    threads : int
        CPU threads for the fits.
    validation : bool
        Evaluate on a validation part of the train rows (:func:`validation_split`) instead of
        the split's test rows: the figure to choose settings with.

    Returns
    -------
    dict
        ``{"project": {"ndcg@10", "recall@20", "users", "ndcg@10_ci95", "recall@20_ci95"},
        "popularity": {...}, "als_implicit": {...}, "ease": {...}, "engine": {...},
        "seconds": float, ...}``.
    """
    start = time.perf_counter()
    frame = _split_frame(data_dir, split if split is not None else split_file)
    if validation:
        frame = validation_split(frame)
    train, test = load_split(data_dir, frame)
    test_users = test["user_id"].unique().sort().to_numpy()
    with tempfile.TemporaryDirectory(prefix="steerfeed-lastfm-") as scratch:
        recs, info = engine_top_k(data_dir, frame, test_users, Path(scratch), threads=threads)
    result: dict[str, Any] = {"project": _scored(recs, test)}
    project_seconds = time.perf_counter() - start
    if out is not None:
        _write_top_k(recs, out)
    if baselines:
        result["popularity"] = _scored(popularity_top_k(train, test_users), test)
        result["als_implicit"] = _scored(
            implicit_als_top_k(train, test_users, seed=seed, threads=threads), test
        )
        result["ease"] = _scored(ease_top_k(train, test_users), test)
    result["engine"] = info
    result["validation"] = validation
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["project_seconds"] = round(project_seconds, 1)
    result["users"] = len(test_users)
    result["train_rows"] = train.height
    result["test_rows"] = test.height
    logger.info(
        "lastfm eval users=%d ndcg@10=%.4f recall@20=%.4f ms=%.0f",
        len(test_users),
        result["project"]["ndcg@10"],
        result["project"]["recall@20"],
        1000 * (time.perf_counter() - start),
    )
    return result
