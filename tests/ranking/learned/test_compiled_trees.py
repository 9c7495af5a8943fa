"""Compiled forests (lleaves) score exactly as the LightGBM boosters, cached, with a fallback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from ranking.learned.compiled_trees import CACHE_DIR, TOLERANCE, probe_rows
from ranking.learned.registry import GateResult, ModelRegistry
from ranking.learned.serving import LearnedModels, LearnedServingSettings
from ranking.learned.training import TrainResult, TrainSettings, build_examples, train_and_evaluate
from ranking.learned.value_model import RANKER_KEY, LearnedValueModel, forest_key
from tests.bench.test_bench_learned import synthetic_log

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def trained() -> TrainResult:
    ex = build_examples(synthetic_log(12_000, seed=4))
    return train_and_evaluate(ex, settings=TrainSettings(since_days=None, num_rounds=30))


@pytest.fixture()
def saved(trained: TrainResult, tmp_path: Path) -> tuple[ModelRegistry, str]:
    reg = ModelRegistry(tmp_path / "models")
    version = reg.save(
        trained.model, metrics={}, holdout_start=None, n_train=trained.n_train, now=None
    )
    return reg, version


def _rows(model: LearnedValueModel, trained: TrainResult) -> np.ndarray:
    """Logged rows, then rows around every split threshold (some missing)."""
    assert model.ranker is not None
    return np.vstack([trained.holdout.matrix()[:600], probe_rows(model.ranker, 600, seed=9)])


def test_compiled_ranker_and_every_head_equal_the_boosters(
    trained: TrainResult, saved: tuple[ModelRegistry, str]
) -> None:
    reg, version = saved
    model = reg.load(version)
    boosters = model.boosters()
    assert RANKER_KEY in boosters
    learned_heads = [n for n, h in model.heads.items() if isinstance(h, lgb.Booster)]
    assert len(learned_heads) >= 4
    x = _rows(model, trained)
    before_value = model.value(x)
    before_heads = model.head_logits(x)

    assert model.compile_trees() == len(boosters)
    assert set(model.compiled) == set(boosters)
    for key, booster in boosters.items():
        want = booster.predict(x, raw_score=True, num_threads=1)
        got = model.compiled[key].predict_raw(x)
        assert np.max(np.abs(got - want)) <= TOLERANCE, key
    # Every path the scorer takes goes through the compiled forests with the same results.
    assert np.max(np.abs(model.value(x) - before_value)) <= 1e-5
    for name in learned_heads:
        assert np.max(np.abs(model.head_logits(x)[name] - before_heads[name])) <= TOLERANCE
    assert model.compiled[forest_key(learned_heads[0])].predict_raw(x[:0]).shape == (0,)


def test_compiled_forests_are_cached_beside_the_model_and_reused(
    saved: tuple[ModelRegistry, str],
) -> None:
    reg, version = saved
    first = reg.load(version)
    n = first.compile_trees()
    cache = reg.root / version / CACHE_DIR
    files = sorted(cache.glob("*.o"))
    assert len(files) == n
    stamps = {f.name: f.stat().st_mtime_ns for f in files}
    again = reg.load(version)  # a restart
    assert again.compile_trees() == n
    assert {f.name: f.stat().st_mtime_ns for f in cache.glob("*.o")} == stamps
    # A damaged cache file is compiled again, never handed to LLVM (which would abort).
    files[0].write_bytes(b"not an object file")
    files[1].with_suffix(".sha256").unlink()
    third = reg.load(version)
    assert third.compile_trees() == n
    x = probe_rows(third.boosters()[RANKER_KEY], 200, seed=1)
    assert np.allclose(third.value(x), first.value(x), atol=1e-5)


def test_serving_compiles_in_the_background_and_keeps_scores(
    trained: TrainResult, saved: tuple[ModelRegistry, str]
) -> None:
    reg, version = saved
    gate = GateResult(True, version, 0.8, "hand_weighted", 0.7, 10, 0.0)
    reg.promote(version, gate)
    models = LearnedModels(reg, settings=LearnedServingSettings())
    model = models.serving()
    assert model is not None
    x = _rows(model, trained)
    assert models.wait_compiled(version, timeout=300)
    assert set(model.compiled) == set(model.boosters())
    booster_only = reg.load(version)
    assert np.max(np.abs(model.value(x) - booster_only.value(x))) <= 1e-5

    off = LearnedModels(reg, settings=LearnedServingSettings(compiled_trees=False))
    m_off = off.serving()
    assert m_off is not None
    assert off.wait_compiled(version, timeout=1)
    assert m_off.compiled == {}


FALLBACK = """
import json, logging, sys
sys.modules["lleaves"] = None  # as if the compiler were not installed
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
from pathlib import Path
import numpy as np
from ranking.learned.compiled_trees import compiler_available, probe_rows
from ranking.learned.registry import ModelRegistry
reg = ModelRegistry(Path(sys.argv[1]))
m = reg.load(sys.argv[2])
x = probe_rows(m.ranker, 300, seed=2)
n1, n2 = m.compile_trees(), m.compile_trees()
print(json.dumps({"available": compiler_available(), "compiled": n1 + n2,
                  "value": m.value(x).tolist()}))
"""


def test_without_the_compiler_the_boosters_serve_and_say_so_once(
    saved: tuple[ModelRegistry, str],
) -> None:
    reg, version = saved
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", FALLBACK, str(reg.root), version],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=300,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["available"] is False
    assert got["compiled"] == 0
    warnings = [ln for ln in out.stderr.splitlines() if "not installed" in ln]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING"), out.stderr
    model = reg.load(version)
    assert model.ranker is not None
    x = probe_rows(model.ranker, 300, seed=2)
    assert np.max(np.abs(np.asarray(got["value"]) - model.value(x))) <= 1e-9
