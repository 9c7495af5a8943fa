"""The torch weighted-ALS model learns the taste clusters planted in synthetic engagement."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from ranking.retrieval.collab import fit_collab
from ranking.retrieval.errors import RetrievalError

N_CLUSTERS = 4
USERS_PER_CLUSTER = 30
ITEMS_PER_CLUSTER = 25


def _planted(seed: int = 0) -> tuple[pl.DataFrame, dict[int, int], dict[int, int]]:
    """Users engage with ~40% of their own cluster's items and almost never with others."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[int, int, float]] = []
    user_cluster: dict[int, int] = {}
    item_cluster = {
        c * ITEMS_PER_CLUSTER + i + 1000: c
        for c in range(N_CLUSTERS)
        for i in range(ITEMS_PER_CLUSTER)
    }
    for c in range(N_CLUSTERS):
        own = [i for i, ic in item_cluster.items() if ic == c]
        for u in range(USERS_PER_CLUSTER):
            uid = c * USERS_PER_CLUSTER + u
            user_cluster[uid] = c
            for item in rng.choice(own, size=10, replace=False):
                rows.append((uid, int(item), float(rng.integers(1, 50))))
            stray = int(rng.choice(list(item_cluster)))
            rows.append((uid, stray, 1.0))
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "weight"], orient="row")
    return frame.unique(["user_id", "item_id"]), user_cluster, item_cluster


def test_recommendations_come_from_the_users_own_cluster() -> None:
    frame, user_cluster, item_cluster = _planted()
    model = fit_collab(frame, dim=8, epochs=10, seed=1, reg=0.5, alpha=2.0)
    recs = model.recommend(list(user_cluster), k=5)
    same = [
        item_cluster[int(i)] == user_cluster[int(u)]
        for u, i in zip(recs["user_id"].to_list(), recs["item_id"].to_list(), strict=True)
    ]
    assert recs.height == 5 * len(user_cluster)
    assert np.mean(same) > 0.9


def test_item_vectors_of_one_cluster_are_closer_to_each_other() -> None:
    frame, _, item_cluster = _planted(seed=2)
    model = fit_collab(frame, dim=8, epochs=10, seed=0, reg=0.5, alpha=2.0)
    vecs = model.item_vectors / np.linalg.norm(model.item_vectors, axis=1, keepdims=True)
    labels = np.array([item_cluster[int(i)] for i in model.item_ids])
    sims = vecs @ vecs.T
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(same, False)
    other = labels[:, None] != labels[None, :]
    assert sims[same].mean() > sims[other].mean() + 0.5


def test_seen_items_are_never_recommended_and_unknown_users_get_nothing() -> None:
    frame, _, _ = _planted(seed=3)
    model = fit_collab(frame, dim=8, epochs=5, seed=0)
    recs = model.recommend([0, 999_999], k=10)
    assert set(recs["user_id"].to_list()) == {0}
    seen = set(frame.filter(pl.col("user_id") == 0)["item_id"].to_list())
    assert not seen & set(recs["item_id"].to_list())
    assert model.user_vector(999_999) is None


def test_bad_settings_are_rejected_with_a_message() -> None:
    frame, _, _ = _planted()
    with pytest.raises(RetrievalError, match="positive dim"):
        fit_collab(frame, dim=0)
    with pytest.raises(RetrievalError, match="unknown weighting"):
        fit_collab(frame, weighting="tfidf")  # type: ignore[arg-type]
    with pytest.raises(RetrievalError, match="empty"):
        fit_collab(frame.clear())
