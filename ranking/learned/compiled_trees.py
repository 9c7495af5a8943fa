"""LightGBM forests compiled to native code for serving (lleaves), the booster kept as the truth.

A page scores ~1,200 candidates with the ranker and the top 200 with every head; through
``Booster.predict`` each call pays LightGBM's per-call overhead and a generic tree walk.
lleaves compiles a forest (via LLVM) into one native function per model: on the demo world's
model it scores the same rows 8-15x faster, and equal to the booster's raw scores (see
docs/benchmarks.md, "Compiled trees"; treelite/tl2cgen was measured too and was slower).

The booster stays the source of truth: a compiled forest is only used once it reproduced the
booster's raw scores within :data:`TOLERANCE` on probe rows, and when lleaves is missing or a
compile fails the booster serves and one WARNING says why. Compiled code is cached beside the
model, keyed by the model text's hash and the compiler and CPU, so a restart loads it in
milliseconds instead of compiling again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import tempfile
import threading
from importlib import metadata
from pathlib import Path
from typing import Protocol

import lightgbm as lgb
import numpy as np

try:  # optional at run time: without it the boosters serve (one warning, see _warn_once)
    import lleaves
    import llvmlite.binding as llvm
except ImportError:  # pragma: no cover - exercised by the fallback test through the flag below
    lleaves = None
    llvm = None

logger = logging.getLogger(__name__)

#: Largest absolute difference from the booster's raw score a compiled forest may show.
TOLERANCE = 1e-6
#: Folder, inside a model's folder, that holds its compiled forests.
CACHE_DIR = "compiled"
_PROBE_ROWS = 256

_warned: set[str] = set()
_warn_lock = threading.Lock()


class TreeCompileError(Exception):
    """A forest that could not be compiled (or did not reproduce its booster)."""


class CompiledForest(Protocol):
    """A forest that returns one raw score per row of a float64 matrix."""

    def predict_raw(self, x: np.ndarray) -> np.ndarray:
        """Raw scores (margins) of the rows of ``x``."""
        ...


def compiler_available() -> bool:
    """Whether the tree compiler (lleaves) can be imported here."""
    return lleaves is not None


def _warn_once(key: str, message: str, *args: object) -> None:
    with _warn_lock:
        if key in _warned:
            return
        _warned.add(key)
    logger.warning(message, *args)


class LleavesForest:
    """One LightGBM model compiled by lleaves to raw scores (thread-safe, GIL released)."""

    def __init__(self, model: object, n_features: int) -> None:
        self._model = model
        self.n_features = n_features

    def predict_raw(self, x: np.ndarray) -> np.ndarray:
        """Raw scores of ``x`` on one thread (a page is too small to split)."""
        if len(x) == 0:
            return np.zeros(0)
        data = np.ascontiguousarray(x, dtype=np.float64)
        return np.asarray(self._model.predict(data, n_jobs=1), dtype=np.float64)  # type: ignore[attr-defined]


def _compiler_tag() -> str:
    """What compiled code depends on besides the model: compiler versions, CPU and arch."""
    cpu = llvm.get_host_cpu_name() if llvm is not None else "?"
    parts = [
        f"lleaves={metadata.version('lleaves')}",
        f"llvmlite={metadata.version('llvmlite')}",
        f"cpu={cpu}",
        f"arch={platform.machine()}",
    ]
    return ";".join(parts)


def cache_key(model_text: str) -> str:
    """Key of a compiled forest: the model text's hash with the compiler's tag."""
    h = hashlib.sha256(model_text.encode())
    h.update(_compiler_tag().encode())
    return h.hexdigest()[:32]


def probe_rows(booster: lgb.Booster, n: int = _PROBE_ROWS, *, seed: int = 0) -> np.ndarray:
    """Rows that walk many paths of ``booster``: each feature drawn around its split thresholds.

    A few are missing (NaN) so the default directions are checked too.
    """
    n_feat = booster.num_feature()
    rng = np.random.default_rng(seed)
    dump = booster.dump_model()
    thresholds: list[list[float]] = [[] for _ in range(n_feat)]

    def walk(node: dict[str, object]) -> None:
        if "split_feature" in node:
            thr = node.get("threshold")
            if isinstance(thr, int | float):
                thresholds[int(node["split_feature"])].append(float(thr))  # type: ignore[call-overload]
            walk(node["left_child"])  # type: ignore[arg-type]
            walk(node["right_child"])  # type: ignore[arg-type]

    for tree in dump.get("tree_info", []):
        walk(tree["tree_structure"])
    x = rng.random((n, n_feat))
    for j, thr in enumerate(thresholds):
        if thr:
            t = np.asarray(thr)
            # A threshold, nudged just below or above it, so both sides of each split are seen.
            picks = t[rng.integers(0, len(t), n)]
            x[:, j] = picks + rng.choice([-1e-3, 1e-3], n) * np.maximum(np.abs(picks), 1.0)
    x[rng.random(x.shape) < 0.05] = np.nan
    return x


def compile_forest(
    booster: lgb.Booster, cache_dir: Path | None, *, model_text: str | None = None
) -> LleavesForest:
    """Compile ``booster`` to raw scores, cached under ``cache_dir`` (None: no cache).

    The result is checked against the booster on :func:`probe_rows`.

    Raises
    ------
    TreeCompileError
        When lleaves is missing, compiling fails or the compiled scores differ from the
        booster's by more than :data:`TOLERANCE`.
    """
    if lleaves is None:
        msg = "lleaves is not installed"
        raise TreeCompileError(msg)
    text = model_text if model_text is not None else booster.model_to_string()
    key = cache_key(text)
    try:
        forest = _compile(text, key, cache_dir)
    except TreeCompileError:
        raise
    except Exception as exc:  # LLVM and lleaves raise many kinds; any one means: not compiled
        msg = f"compiling failed: {type(exc).__name__}: {exc}"
        raise TreeCompileError(msg) from exc
    x = probe_rows(booster)
    want = np.asarray(booster.predict(x, raw_score=True, num_threads=1), dtype=np.float64)
    got = forest.predict_raw(x)
    diff = float(np.max(np.abs(got - want))) if len(x) else 0.0
    if not diff <= TOLERANCE:
        msg = f"compiled scores differ from the booster's by {diff:.3g} (> {TOLERANCE})"
        raise TreeCompileError(msg)
    return forest


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cached_object(cached: Path) -> bool:
    """Whether ``cached`` holds the object code its digest file vouches for.

    LLVM aborts the whole process on a damaged object file, so one is never handed over
    unchecked: a file whose digest does not match is removed (and compiled again).
    """
    digest = cached.with_suffix(".sha256")
    if not cached.exists() or not digest.exists():
        return False  # not there yet (or another worker is between its two renames)
    try:
        ok = digest.read_text().strip() == _file_digest(cached)
    except OSError:
        ok = False
    if not ok:
        logger.warning("compiled trees cache %s damaged; compiling again", cached)
        cached.unlink(missing_ok=True)
        digest.unlink(missing_ok=True)
    return ok


def _compile(text: str, key: str, cache_dir: Path | None) -> LleavesForest:
    """Compile ``text`` (or load its cached object code) with lleaves."""
    assert lleaves is not None
    cached: Path | None = None
    if cache_dir is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            cached = cache_dir / f"{key}.o"
        except OSError as exc:  # a read-only model folder: compile in memory every start
            _warn_once(f"cache:{cache_dir}", "compiled trees not cached (%s): %s", cache_dir, exc)
    # lleaves reads a model file; the text is the verified one, written next to the cache.
    with tempfile.TemporaryDirectory(dir=cache_dir if cached is not None else None) as tmp:
        model_file = Path(tmp) / "model.txt"
        model_file.write_text(text)
        model = lleaves.Model(model_file=str(model_file))
        if cached is not None and _cached_object(cached):
            model.compile(cache=str(cached), raw_score=True)
        elif cached is None:
            model.compile(raw_score=True)
        else:
            # Written under private names and renamed, object first: workers starting together
            # never read a half-written file, and a digest always names a complete object.
            part = Path(tmp) / "forest.o"
            model.compile(cache=str(part), raw_score=True)
            part_digest = Path(tmp) / "forest.sha256"
            part_digest.write_text(_file_digest(part))
            os.replace(part, cached)
            os.replace(part_digest, cached.with_suffix(".sha256"))
        return LleavesForest(model, model.num_feature())


def compile_boosters(
    boosters: dict[str, lgb.Booster], cache_dir: Path | None
) -> dict[str, CompiledForest]:
    """Compile each named booster; the ones that fail are left out (one WARNING each kind)."""
    out: dict[str, CompiledForest] = {}
    if lleaves is None:
        _warn_once(
            "missing", "tree compiler (lleaves) is not installed; the LightGBM boosters serve"
        )
        return out
    for name, booster in boosters.items():
        try:
            out[name] = compile_forest(booster, cache_dir)
        except TreeCompileError as exc:
            _warn_once(
                f"fail:{name}:{exc}",
                "compiled trees: %s not compiled (%s); its booster serves",
                name,
                exc,
            )
    return out
