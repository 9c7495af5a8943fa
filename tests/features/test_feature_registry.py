"""The feature registry: one declaration per feature, read the same way in training and serving."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl
import pytest

from features.registry import (
    REGISTRY,
    FeatureRegistryError,
    decode_logged,
    feature_names,
    matrix,
    spec,
)
from ranking.hydrators.clip_features import ClipFeaturesHydrator
from ranking.hydrators.learned_features import LearnedFeaturesHydrator
from ranking.hydrators.locality import LocalityHydrator
from ranking.hydrators.retriever_features import RetrieverFeaturesHydrator


def test_every_served_feature_is_declared_and_every_declared_one_is_served() -> None:
    served = [
        *ClipFeaturesHydrator.FEATURES,
        *LearnedFeaturesHydrator.FEATURES,
        *LocalityHydrator.FEATURES,
        *RetrieverFeaturesHydrator.FEATURES,
    ]
    assert len(served) == len(set(served))
    assert set(served) == set(feature_names())


def test_unknown_feature_names_the_valid_ones() -> None:
    with pytest.raises(FeatureRegistryError, match=r"valid: .*like_rate"):
        spec("likes_rate")
    with pytest.raises(FeatureRegistryError, match="unknown entities"):
        feature_names(entities=("clips",))  # type: ignore[arg-type]


def test_issue_feature_families_are_all_declared() -> None:
    names = set(feature_names())
    assert {"velocity_log", "skip_rate", "see_less_rate", "report_rate"} <= names
    assert {"author_credibility", "author_follower_growth_7d", "author_followers_log"} <= names
    assert {"user_author_affinity", "friends_engaged", "friend_cameo", "remix_of_friend"} <= names
    assert {"user_clip_cosine", "hour_of_day", "session_depth", "safety"} <= names


def test_logged_json_missing_or_null_values_take_the_declared_default() -> None:
    logged = pl.Series(
        [json.dumps({"like_rate": 0.3, "score": 9.0}), json.dumps({"like_rate": None}), None]
    )
    out = decode_logged(logged, ["like_rate", "author_credibility"])
    assert out["like_rate"].to_list() == [0.3, spec("like_rate").default, spec("like_rate").default]
    assert out["author_credibility"].to_list() == [spec("author_credibility").default] * 3
    assert "score" not in out.columns


def test_serving_matrix_equals_the_matrix_training_reads_back_from_the_log() -> None:
    names = list(feature_names())
    rng = np.random.default_rng(0)
    served = pl.DataFrame({n: rng.random(5) for n in names}).with_columns(
        pl.Series("like_rate", [0.1, None, 0.3, 0.4, 0.5])
    )
    logged = pl.Series([json.dumps(r) for r in served.to_dicts()])
    assert np.array_equal(matrix(served, names), matrix(decode_logged(logged, names), names))


def _matrix_per_column(frame: pl.DataFrame, names: list[str]) -> np.ndarray:
    """The matrix as it was built before one NaN test over the whole matrix (the reference)."""
    out = np.empty((frame.height, len(names)), dtype=np.float64)
    for j, n in enumerate(names):
        d = spec(n).default
        if n in frame.columns:
            col = frame.get_column(n)
            if col.dtype != pl.Float64:
                col = col.cast(pl.Float64)
            vals = col.to_numpy()
            if col.null_count() or np.isnan(vals).any():
                vals = np.where(np.isnan(vals), d, vals)
            out[:, j] = vals
        else:
            out[:, j] = d
    return out


def test_matrix_equals_the_per_column_reference_on_served_pages(engine: Any) -> None:
    """The served candidates of real pages (tiny world), with nulls, NaNs, integer and absent
    columns: the same matrix as the per-column reference, bit for bit."""
    selector = engine.products["home"].selector  # sees every scored candidate
    frames: list[pl.DataFrame] = []
    real = selector.select

    def capture(query: Any, candidates: pl.DataFrame) -> Any:
        frames.append(candidates)
        return real(query, candidates)

    selector.select = capture
    try:
        for uid in sorted(engine.state.profiles.users)[:20]:
            engine.feed(int(uid), limit=10)
    finally:
        del selector.select
    assert frames
    names = list(REGISTRY)
    for frame in frames[:10]:
        assert np.array_equal(matrix(frame, names), _matrix_per_column(frame, names))
        n = frame.height
        holes = frame.with_columns(
            pl.Series("views_log", [None if i % 3 == 0 else 1.5 for i in range(n)]),
            pl.Series("like_rate", [float("nan") if i % 2 else 0.25 for i in range(n)]),
            pl.Series("maturity", [None if i % 4 == 0 else 1 for i in range(n)], pl.Int64),
        ).drop("age_hours")
        assert np.array_equal(matrix(holes, names), _matrix_per_column(holes, names))
