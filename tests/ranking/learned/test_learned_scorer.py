"""The learned scorer: light (ranker) then heavy (every head) scoring, and override checks."""

from __future__ import annotations

import numpy as np
import pytest

from ranking.learned.training import TrainResult, TrainSettings, build_examples, train_and_evaluate
from ranking.learned.value_model import ValueWeights
from ranking.scorers.lightgbm_scorer import OverrideError, apply_value_weights, light_then_heavy
from tests.bench.test_bench_learned import synthetic_log


@pytest.fixture(scope="module")
def trained() -> TrainResult:
    ex = build_examples(synthetic_log(20_000, seed=2))
    return train_and_evaluate(ex, settings=TrainSettings(since_days=None, num_rounds=40))


def test_heavy_top_k_get_the_full_value_and_the_rest_rank_below_in_ranker_order(
    trained: TrainResult,
) -> None:
    m = trained.model
    x = trained.holdout.matrix()[:500]
    full = m.value(x)
    mixed = light_then_heavy(m, x, m.weights, 100)
    light = m.ranker_score(x)
    top = np.argsort(-light, kind="stable")[:100]
    assert np.allclose(mixed[top], full[top])
    rest = np.setdiff1d(np.arange(500), top)
    assert mixed[rest].max() < mixed[top].min()
    by_light = rest[np.argsort(-light[rest], kind="stable")]
    assert np.all(np.diff(mixed[by_light]) <= 0)
    # The page (top 20) is the same as scoring every candidate with every head, or close.
    assert len(set(np.argsort(-mixed)[:20]) & set(np.argsort(-full)[:20])) >= 16


def test_value_weight_overrides_are_checked() -> None:
    base = ValueWeights()
    assert apply_value_weights(base, {"remix": 9}).remix == 9.0
    assert apply_value_weights(base, None) is base
    with pytest.raises(OverrideError, match="valid: long_view"):
        apply_value_weights(base, {"remixes": 1.0})
    with pytest.raises(OverrideError, match="finite"):
        apply_value_weights(base, {"remix": float("nan")})
    with pytest.raises(OverrideError, match="dict"):
        apply_value_weights(base, [1, 2])
