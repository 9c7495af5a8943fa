"""The learned ranker's folds never leak labels, and its pages hold only unseen items."""

from __future__ import annotations

import numpy as np
import polars as pl

from ranking.learned.candidate_features import (
    FEATURE_NAMES,
    CandidateConfig,
    candidate_features,
    fit_retrievers,
)
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


def test_bagged_folds_train_one_booster_each_and_average_their_scores() -> None:
    frame = _clustered(2)
    small = CandidateConfig(
        per_source=20, per_minor_source=10, collab_dim=8, collab_alt_dim=4, collab_epochs=5
    )
    params = {"min_data_in_leaf": 20}
    bagged = train_lambdarank(
        frame, config=LtrConfig(rounds=10, folds=2, candidates=small, lgb_params=params)
    )
    pooled = train_lambdarank(
        frame,
        config=LtrConfig(rounds=10, folds=2, bag_folds=False, candidates=small, lgb_params=params),
    )
    assert len(bagged.boosters) == 2
    assert len(pooled.boosters) == 1
    feats = candidate_features(fit_retrievers(frame, config=small), np.array([0, 45, 90]))
    x = feats.select(FEATURE_NAMES).to_numpy().astype(np.float32)
    mean = np.mean([b.predict(x) for b in bagged.boosters], axis=0)
    np.testing.assert_allclose(bagged.score(feats), mean, rtol=1e-6)
    assert set(bagged.feature_importance()) == set(FEATURE_NAMES)
