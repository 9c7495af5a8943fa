"""The learned ranker's folds never leak labels, and its pages hold only unseen items."""

from __future__ import annotations

import numpy as np
import polars as pl

from features.candidate_features import FEATURE_NAMES, CandidateConfig
from ranking.learned.ltr import LtrConfig, rank_candidates, split_fold, train_lambdarank


def _clustered(seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(3):
        items = np.arange(c * 30, c * 30 + 30) + 100
        for u in range(40):
            for i in rng.choice(items, size=12, replace=False):
                rows.append((c * 40 + u, int(i), float(rng.integers(1, 100))))
    return pl.DataFrame(rows, schema=["user_id", "item_id", "weight"], orient="row")


def test_fold_parts_are_disjoint_and_every_user_keeps_a_fit_row() -> None:
    frame = _clustered()
    fit, label = split_fold(frame, label_fraction=0.3, seed=4)
    assert fit.height + label.height == frame.height
    assert fit.join(label, on=["user_id", "item_id"], how="semi").height == 0
    assert set(fit["user_id"].unique()) == set(frame["user_id"].unique())


def test_ranker_pages_hold_unseen_items_of_the_users_own_cluster() -> None:
    frame = _clustered(1)
    cfg = LtrConfig(
        rounds=20,
        folds=1,
        candidates=CandidateConfig(
            per_source=20, per_minor_source=10, collab_dim=8, collab_alt_dim=4, collab_epochs=5
        ),
        lgb_params={"min_data_in_leaf": 20},
    )
    ranker = train_lambdarank(frame, config=cfg)
    assert ranker.feature_names == FEATURE_NAMES
    users = np.array([0, 45, 90])
    recs = rank_candidates(ranker, frame, users, k=5, config=cfg.candidates)
    assert recs.group_by("user_id").len()["len"].to_list() == [5, 5, 5]
    seen = recs.join(frame, on=["user_id", "item_id"], how="semi")
    assert seen.height == 0
    cluster = ((recs["item_id"] - 100) // 30).to_numpy()
    assert float(np.mean(cluster == recs["user_id"].to_numpy() // 40)) > 0.8
