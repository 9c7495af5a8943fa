"""The train job picks its rule from the log: impressions (logged features) or a history."""

from __future__ import annotations

from typing import Any

from features.registry import CANDIDATE_FEATURES, feature_names
from pipelines.serving.jobs.train import train_and_register
from ranking.learned.candidate_features import FEATURE_NAMES


def test_candidate_features_in_the_registry_are_the_ones_the_retrievers_compute() -> None:
    assert tuple(f.name for f in CANDIDATE_FEATURES) == FEATURE_NAMES
    assert set(FEATURE_NAMES) <= set(feature_names())


def test_a_log_with_impressions_trains_by_the_impression_rule_without_dead_columns(
    engine: Any,
) -> None:
    report = train_and_register(engine, promote=True)
    assert "rule" not in report and report["n_examples"] > 0
    model = engine.learned.get(report["version"])
    assert model.retrievers is None
    assert not set(model.feature_names) & set(FEATURE_NAMES)
    page = engine.feed(next(iter(engine.state.profiles.users)), limit=10)
    skipped = page.diagnostics.skipped
    assert "src.retrievers" in skipped and "h.retriever_features" in skipped
