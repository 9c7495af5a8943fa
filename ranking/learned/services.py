"""The learned ranker's serving state: :func:`build_learned` makes the engine's
:class:`~ranking.learned.serving.LearnedModels` over ``<data_dir>/models``.

Nothing is loaded here; the first request that needs a model loads it (and calls
``on_first_load``, e.g. to compute the author statistics the model reads). The home feed lists
the learned scorer always: it is enabled while a model is promoted (re-read from the registry
at most every ``check_every_s``), so a promotion or a rollback changes no declared product.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ranking.learned.registry import ModelRegistry
from ranking.learned.serving import LearnedModels, LearnedServingSettings


def models_dir(data_dir: Path) -> Path:
    """The model registry folder of a data directory."""
    return Path(data_dir) / "models"


def build_learned(
    data_dir: Path,
    settings: LearnedServingSettings,
    *,
    on_first_load: Callable[[], None] | None = None,
) -> LearnedModels:
    """The learned models of a data directory's registry (loaded lazily)."""
    models = LearnedModels(ModelRegistry(models_dir(data_dir)), settings=settings)
    models.on_first_load = on_first_load
    return models
