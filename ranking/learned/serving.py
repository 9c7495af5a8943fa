"""The learned models a running engine serves: loaded lazily, cached, checked, reported.

:class:`LearnedModels` sits between the on-disk :class:`~ranking.learned.registry.ModelRegistry`
and the serving components (:class:`ranking.scorers.lightgbm_scorer.LightGbmScorer` and the
explanation stage). It never loads a model at construction; the first request that needs one
loads it. It re-reads the registry pointer when ``registry.json`` changes (a promotion or a
rollback from the CLI or the train job), at most every ``check_every_s`` seconds.

A model that fails to load (a missing or altered file) is not retried on every request: the
error is kept, :meth:`LearnedModels.health` reports it as degraded, and the scorer falls back
to the hand-weighted value model until the pointer changes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ranking.learned.registry import HAND_WEIGHTED, ModelRegistry
from ranking.learned.value_model import LearnedModelError, LearnedValueModel

logger = logging.getLogger(__name__)


class LearnedServingSettings(BaseSettings):
    """How the learned ranker serves (env prefix ``STEERFEED_LEARNED_``)."""

    model_config = SettingsConfigDict(env_prefix="STEERFEED_LEARNED_", extra="forbid")

    heavy_top_k: int | None = Field(
        default=200,
        ge=1,
        description="candidates scored by every head (the rest by the ranker alone); None: all",
    )
    explain_top_k: int = Field(default=4, ge=1, le=20, description="contributions per item")
    check_every_s: float = Field(default=2.0, gt=0, description="registry re-read interval")
    compiled_trees: bool = Field(
        default=True,
        description="serve the ranker and heads through compiled forests (lleaves) once "
        "compiled in the background; false: the LightGBM boosters serve",
    )


class LearnedModels:
    """Lazily loaded learned models of one registry.

    Parameters
    ----------
    registry
        Where the models live.
    settings
        How it serves (``check_every_s``: how often, at most, the registry pointer is re-read;
        the scorer's ``heavy_top_k`` and the explanations' ``explain_top_k``).
    max_cached
        Loaded versions kept in memory (the serving one plus experiment arms).
    """

    def __init__(
        self, registry: ModelRegistry, *, settings: LearnedServingSettings, max_cached: int = 4
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.check_every_s = settings.check_every_s
        self.max_cached = max_cached
        self._lock = threading.Lock()
        self._cache: dict[str, LearnedValueModel] = {}
        self._errors: dict[str, str] = {}
        self._serving: str | None = None
        self._pointer_error: str | None = None
        self._mtime: float | None = None
        self._checked = -float("inf")
        self._warmed = False
        self._compiling: dict[str, threading.Thread] = {}
        # Called once, before the first model is used (e.g. to compute the author statistics
        # the model reads, so the first pages are not served on defaults).
        self.on_first_load: Callable[[], None] | None = None
        self._refresh_pointer(force=True)

    # -- pointer ----------------------------------------------------------------------------
    def _refresh_pointer(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < self.check_every_s:
            return
        self._checked = now
        mtime = self.registry.index_mtime()
        if not force and mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            serving = self.registry.serving_version()
            self._pointer_error = None
        except LearnedModelError as exc:
            serving = None
            self._pointer_error = str(exc)
            logger.error("learned ranker: %s; serving the hand-weighted scorer", exc)
        if serving != self._serving:
            logger.info("learned ranker: serving %s", serving or HAND_WEIGHTED)
        self._serving = serving
        if serving is not None:
            self._errors.pop(serving, None)  # a re-promotion gets a fresh load attempt

    def invalidate(self) -> None:
        """Re-read the registry pointer now and drop failed-load memories."""
        with self._lock:
            self._errors.clear()
            self._refresh_pointer(force=True)

    def serving_version(self) -> str | None:
        """The promoted version (None: nothing learned is promoted)."""
        with self._lock:
            self._refresh_pointer()
            return self._serving

    # -- models -----------------------------------------------------------------------------
    def get(self, version: str) -> LearnedValueModel:
        """A stored model by version (loaded once and cached).

        Raises
        ------
        LearnedModelError
            When it is unknown or its files do not load (remembered until :meth:`invalidate`).
        """
        with self._lock:
            return self._get_locked(version)

    def _get_locked(self, version: str) -> LearnedValueModel:
        model = self._cache.get(version)
        if model is not None:
            return model
        err = self._errors.get(version)
        if err is not None:
            raise LearnedModelError(err)
        t0 = time.perf_counter()
        try:
            model = self.registry.load(version)
        except LearnedModelError as exc:
            self._errors[version] = str(exc)
            logger.error("learned model %s failed to load: %s", version, exc)
            raise
        if len(self._cache) >= self.max_cached:
            keep = self._serving
            for v in [v for v in self._cache if v != keep][:1]:
                del self._cache[v]
                self._compiling.pop(v, None)
        self._cache[version] = model
        if self.settings.compiled_trees:
            self._start_compiling(version, model)
        if not self._warmed:
            self._warmed = True
            if self.on_first_load is not None:
                try:
                    self.on_first_load()
                except Exception:
                    logger.exception("learned ranker warm-up failed; serving on defaults")
        logger.info("loaded learned model %s in %.0f ms", version, (time.perf_counter() - t0) * 1e3)
        return model

    def _start_compiling(self, version: str, model: LearnedValueModel) -> None:
        """Compile the model's forests on a thread; the boosters serve until it finishes.

        A cold compile of the demo world's model takes about a second (seconds for larger
        forests), a cached one milliseconds: either way the first pages are not held up.
        """

        def run() -> None:
            t0 = time.perf_counter()
            try:
                n = model.compile_trees()
            except Exception:  # never let a compiler bug take serving down: boosters serve
                logger.exception("compiling the trees of %s failed; boosters serve", version)
                return
            logger.info(
                "learned model %s: %d of %d forests compiled in %.0f ms",
                version,
                n,
                len(model.boosters()),
                (time.perf_counter() - t0) * 1e3,
            )

        thread = threading.Thread(target=run, name=f"compile-{version}", daemon=True)
        self._compiling[version] = thread
        thread.start()

    def wait_compiled(self, version: str, timeout: float | None = None) -> bool:
        """Wait for ``version``'s forests to be compiled; True when done (or none to compile)."""
        with self._lock:
            thread = self._compiling.get(version)
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def serving(self) -> LearnedValueModel | None:
        """The promoted model, or None when none is promoted or it does not load."""
        with self._lock:
            self._refresh_pointer()
            if self._serving is None:
                return None
            try:
                return self._get_locked(self._serving)
            except LearnedModelError:
                return None

    def health(self) -> dict[str, Any]:
        """Health check: which model serves and whether serving fell back (``degraded``)."""
        with self._lock:
            self._refresh_pointer()
            serving = self._serving
            if self._pointer_error is not None:
                return {
                    "serving": HAND_WEIGHTED,
                    "degraded": True,
                    "error": self._pointer_error,
                }
            if serving is None:
                return {"serving": HAND_WEIGHTED, "promoted": None, "degraded": False}
            if serving not in self._cache and serving not in self._errors:
                with contextlib.suppress(LearnedModelError):
                    self._get_locked(serving)
            err = self._errors.get(serving)
            if err is not None:
                return {
                    "serving": HAND_WEIGHTED,
                    "promoted": serving,
                    "degraded": True,
                    "error": err,
                }
            return {"serving": serving, "promoted": serving, "degraded": False}
