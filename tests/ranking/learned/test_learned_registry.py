"""The model registry: versions on disk, the promotion gate on a later window, rollback."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pipelines.offline.demo_world import WorldConfig, build_world
from ranking.learned.registry import (
    HAND_WEIGHTED,
    ModelRegistry,
    PromotionRefused,
    promotion_gate,
)
from ranking.learned.replay import ReplayTables, replay_features
from ranking.learned.training import (
    Examples,
    TrainResult,
    TrainSettings,
    build_examples,
    train_and_evaluate,
)
from ranking.learned.value_model import LearnedModelError, LearnedValueModel, ValueWeights


@pytest.fixture(scope="module")
def trained() -> TrainResult:
    w = build_world(WorldConfig(n_users=100, n_clips=600, n_events=10_000, seed=11))
    events = replay_features(ReplayTables(w.users, w.clips, w.follows, w.blocks, w.events))
    ex = build_examples(events)
    return train_and_evaluate(
        ex, settings=TrainSettings(since_days=None, num_rounds=60, min_data_in_leaf=20)
    )


def _reversed(model: LearnedValueModel) -> LearnedValueModel:
    """The same boosters with every value weight negated: it ranks the page upside down."""
    flipped = ValueWeights(**{k: -v for k, v in model.weights.model_dump().items()})
    return replace(model, weights=flipped, version=None, meta={})


def _save(reg: ModelRegistry, model: LearnedValueModel, res: TrainResult) -> str:
    return reg.save(model, metrics=res.metrics, holdout_start=res.cutoff, n_train=res.n_train)


def test_saved_model_loads_back_with_the_same_scores(tmp_path: Path, trained: TrainResult) -> None:
    reg = ModelRegistry(tmp_path / "models")
    v = _save(reg, trained.model, trained)
    loaded = reg.load(v)
    x = trained.holdout.matrix()
    assert loaded.feature_names == trained.model.feature_names
    assert loaded.value(x) == pytest.approx(trained.model.value(x))
    assert reg.serving_version() is None  # saved is not promoted
    rec = reg.records()[0]
    assert rec.metrics["ndcg@10"] == trained.metrics["ndcg@10"] and not rec.serving


def test_first_model_must_beat_the_hand_weighted_scorer_on_the_later_window(
    tmp_path: Path, trained: TrainResult
) -> None:
    reg = ModelRegistry(tmp_path / "models")
    v = _save(reg, trained.model, trained)
    gate = promotion_gate(reg.load(v), None, trained.holdout)
    assert gate.incumbent == HAND_WEIGHTED and gate.passed, gate.message()
    reg.promote(v, gate)
    assert reg.serving_version() == v


def test_a_model_that_ranks_worse_later_is_refused_and_serving_is_unchanged(
    tmp_path: Path, trained: TrainResult
) -> None:
    reg = ModelRegistry(tmp_path / "models")
    good = _save(reg, trained.model, trained)
    reg.promote(good, promotion_gate(reg.load(good), None, trained.holdout))
    bad = _save(reg, _reversed(trained.model), trained)
    gate = promotion_gate(reg.load(bad), reg.load(good), trained.holdout)
    assert not gate.passed and gate.incumbent == good
    assert gate.candidate_ndcg is not None and gate.incumbent_ndcg is not None
    assert gate.candidate_ndcg < gate.incumbent_ndcg
    with pytest.raises(PromotionRefused, match="does not beat"):
        reg.promote(bad, gate)
    assert reg.serving_version() == good
    records = {r.version: r for r in reg.records()}
    assert records[bad].meta["gate"]["passed"] is False  # the refusal is recorded
    assert [r.version for r in reg.records()] == [good, bad]  # oldest first


def test_a_required_margin_refuses_an_equal_model(tmp_path: Path, trained: TrainResult) -> None:
    reg = ModelRegistry(tmp_path / "models")
    a = _save(reg, trained.model, trained)
    gate = promotion_gate(reg.load(a), trained.model, trained.holdout, min_gain=0.01)
    assert not gate.passed
    with pytest.raises(PromotionRefused):
        reg.promote(a, gate)


def test_gate_of_another_model_cannot_promote(tmp_path: Path, trained: TrainResult) -> None:
    reg = ModelRegistry(tmp_path / "models")
    a = _save(reg, trained.model, trained)
    b = _save(reg, trained.model, trained)
    gate = promotion_gate(reg.load(a), None, trained.holdout)
    with pytest.raises(PromotionRefused, match="not"):
        reg.promote(b, gate)


def test_rollback_returns_to_the_previous_model_then_to_hand_weighted(
    tmp_path: Path, trained: TrainResult
) -> None:
    reg = ModelRegistry(tmp_path / "models")
    first = _save(reg, trained.model, trained)
    reg.promote(first, promotion_gate(reg.load(first), None, trained.holdout))
    second = _save(reg, trained.model, trained)
    reg.promote(second, promotion_gate(reg.load(second), reg.load(first), trained.holdout))
    assert reg.history() == [first, second]
    assert reg.rollback() == first
    assert reg.serving_version() == first
    assert reg.exists(second)  # rolled-back models stay on disk
    assert reg.rollback() is None
    assert reg.serving_version() is None
    with pytest.raises(LearnedModelError, match="nothing to roll back"):
        reg.rollback()


def test_an_altered_or_missing_model_file_does_not_load(
    tmp_path: Path, trained: TrainResult
) -> None:
    reg = ModelRegistry(tmp_path / "models")
    v = _save(reg, trained.model, trained)
    ranker = tmp_path / "models" / v / "ranker.txt"
    ranker.write_text(ranker.read_text().replace("tree", "tre", 1))
    with pytest.raises(LearnedModelError, match="checksum"):
        reg.load(v)
    ranker.unlink()
    with pytest.raises(LearnedModelError, match="missing"):
        reg.load(v)
    with pytest.raises(LearnedModelError, match="unknown model version"):
        reg.load("v-nope")


def test_examples_type_is_what_the_gate_reads(trained: TrainResult) -> None:
    assert isinstance(trained.holdout, Examples)
    assert trained.holdout.frame["req_ts"].min() >= trained.cutoff  # type: ignore[operator]


def test_distilled_explainer_is_saved_faithful_and_used_only_under_the_models_weights(
    tmp_path: Path, trained: TrainResult
) -> None:
    model = trained.model
    assert model.explainer is not None
    fid = model.meta["explainer_fidelity"]
    assert fid["spearman"] > 0.8 and fid["r2"] > 0.6  # it follows the value it explains
    reg = ModelRegistry(tmp_path / "models")
    v = _save(reg, model, trained)
    loaded = reg.load(v)
    assert loaded.explainer is not None
    assert loaded.meta["explainer_fidelity"] == fid
    x = trained.holdout.matrix()[:50]
    fast = loaded.contributions(x, k=3)
    assert fast == model.contributions(x, k=3)
    # The strongest reason agrees with the exact per-head TreeSHAP on most rows.
    exact = replace(loaded, explainer=None).contributions(x, k=3)
    pairs = zip(fast, exact, strict=True)
    agree = sum(f[0]["feature"] in {e["feature"] for e in ex} for f, ex in pairs)
    assert agree >= 0.7 * len(x)
    # An experiment arm's own weights are explained exactly, not by the distilled value.
    flipped = _reversed(loaded).weights
    assert loaded.contributions(x, flipped, k=3) == replace(loaded, explainer=None).contributions(
        x, flipped, k=3
    )
    # A tampered explainer file is refused like any other model file.
    (reg.root / v / "explainer.txt").write_text("tree\n")
    with pytest.raises(LearnedModelError, match="checksum"):
        reg.load(v)
