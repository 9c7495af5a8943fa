"""The fold rule: one ranker trained from an impression-free history, served as trained."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest

from ranking.learned.candidate_features import (
    FEATURE_NAMES,
    CandidateConfig,
    candidate_features,
    features_for_items,
    fit_retrievers,
    user_candidates,
)
from ranking.learned.history_training import (
    HistoryTrainSettings,
    average_boosters,
    split_fold,
    train_from_history,
)
from ranking.learned.value_model import LearnedValueModel

SMALL = CandidateConfig(per_source=30, per_minor_source=15, popular=5, collab_dim=8, ease_lam=5.0)


def _history(seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(60):
        g = u % 3
        items = rng.choice(np.arange(g, 90, 3), size=12, replace=False)
        rows += [(u, int(i), float(rng.integers(1, 300))) for i in items]
    friends = [
        (u, v)
        for u in range(60)
        for v in range(60)
        if u != v and u % 3 == v % 3 and (u + v) % 5 == 0
    ]
    return (
        pl.DataFrame(rows, schema=["user_id", "item_id", "weight"], orient="row"),
        pl.DataFrame(friends, schema=["user_id", "friend_id"], orient="row"),
    )


def test_served_features_equal_the_training_features_of_the_same_pair() -> None:
    interactions, friends = _history()
    retrievers = fit_retrievers(interactions, friendships=friends, config=SMALL)
    batch = candidate_features(retrievers, [4, 7])
    for uid in (4, 7):
        rows = batch.filter(pl.col("user_id") == uid)
        served = features_for_items(retrievers, uid, rows["item_id"].to_numpy())
        for name in FEATURE_NAMES:
            np.testing.assert_allclose(
                served[name].astype(np.float32),
                rows[name].to_numpy(),
                rtol=1e-5,
                atol=1e-6,
                equal_nan=True,
            )
        items, _ = user_candidates(retrievers, uid)
        assert set(items.tolist()) == set(rows["item_id"].to_list())


def test_one_row_ranks_count_like_the_stable_sort_with_ties() -> None:
    from ranking.learned.candidate_features import _ranks, _ranks_at

    rng = np.random.default_rng(3)
    row = rng.choice([0.0, 1.5, 2.0, -np.inf, 0.7], size=(1, 200))
    row[0, :20] = rng.normal(size=20)
    cols = rng.choice(200, size=60, replace=False)
    want = _ranks(row)[0, cols].astype(np.float64)
    got = _ranks_at(row, np.zeros(60, dtype=np.int64), cols)
    np.testing.assert_array_equal(got, want)


def test_unknown_people_and_clips_get_no_values() -> None:
    interactions, friends = _history()
    retrievers = fit_retrievers(interactions, friendships=friends, config=SMALL)
    out = features_for_items(retrievers, 10_000, np.asarray([1, 2]))
    assert all(np.isnan(v).all() for v in out.values())
    out = features_for_items(retrievers, 4, np.asarray([999_999, 1]))
    assert np.isnan(out["ease_score"][0]) and out["item_listeners"][1] > 0
    assert user_candidates(retrievers, 10_000)[0].size == 0


def test_averaged_booster_predicts_the_mean_of_its_boosters() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 4))
    boosters = []
    for s in range(3):
        y = (x[:, s] + rng.normal(size=600) > 0).astype(float)
        data = lgb.Dataset(x, label=y, group=[20] * 30)
        params = {"objective": "lambdarank", "num_leaves": 7, "verbose": -1, "seed": s}
        boosters.append(lgb.train(params, data, num_boost_round=15))
    merged = average_boosters(boosters)
    expected = np.mean([b.predict(x) for b in boosters], axis=0)
    np.testing.assert_allclose(merged.predict(x), expected, atol=1e-9)
    assert merged.num_trees() == sum(b.num_trees() for b in boosters)


def test_fold_labels_never_reach_the_fit_part() -> None:
    interactions, _ = _history()
    fit, label = split_fold(interactions, label_fraction=0.3, seed=1)
    assert fit.height + label.height == interactions.height
    assert fit.join(label, on=["user_id", "item_id"], how="semi").height == 0
    assert set(fit["user_id"].unique().to_list()) == set(interactions["user_id"].unique().to_list())


def test_history_ranker_learns_the_taste_groups_and_keeps_gate_people_out(
    tmp_path: pytest.TempPathFactory,
) -> None:
    interactions, friends = _history()
    settings = HistoryTrainSettings(folds=2, rounds=30, min_data_in_leaf=10, gate_frac=0.2)
    result = train_from_history(
        interactions, friendships=friends, settings=settings, candidates=SMALL
    )
    model = result.model
    assert model.retrievers is not None and model.ranker is not None
    assert model.ranker.num_trees() > 0
    gate_users = set(result.holdout.frame["user_id"].unique().to_list())
    assert gate_users and result.metrics["ndcg@10"] is not None
    # the gate people's examples never trained a booster: their count is not in n_train
    assert result.n_train > 0
    # ranked by the model, a person's own group's clips come first
    uid = 5
    items, _ = user_candidates(model.retrievers, uid)
    feats = features_for_items(model.retrievers, uid, items)
    scores = model.value(model.matrix(pl.DataFrame(feats)))
    top = items[np.argsort(-scores)[:5]]
    assert np.mean(top % 3 == uid % 3) >= 0.8


def test_a_history_model_saves_and_loads_with_its_retrievers(tmp_path: object) -> None:
    from pathlib import Path

    from ranking.learned.registry import ModelRegistry

    interactions, friends = _history()
    settings = HistoryTrainSettings(folds=1, rounds=10, min_data_in_leaf=10)
    model = train_from_history(
        interactions, friendships=friends, settings=settings, candidates=SMALL
    ).model
    registry = ModelRegistry(Path(str(tmp_path)) / "models")
    version = registry.save(model, metrics={}, holdout_start=None, n_train=1)
    loaded = registry.load(version)
    assert isinstance(loaded, LearnedValueModel) and loaded.retrievers is not None
    a = features_for_items(model.retrievers, 3, np.arange(90))  # type: ignore[arg-type]
    b = features_for_items(loaded.retrievers, 3, np.arange(90))
    np.testing.assert_allclose(a["collab_score"], b["collab_score"], equal_nan=True)
    path = Path(str(tmp_path)) / "models" / version / "retrievers.pkl"
    path.write_bytes(path.read_bytes()[:-1] + b"x")
    from ranking.learned.value_model import LearnedModelError

    with pytest.raises(LearnedModelError, match="checksum"):
        registry.load(version)
