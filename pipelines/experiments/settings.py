"""Settings of the experiments package (env prefix ``STEERFEED_EXPERIMENTS_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ExperimentSettings(BaseSettings):
    """Serving-side experiment settings.

    Attributes
    ----------
    exploration_rate : float
        Default per-slot exploration probability of the home feed; an experiment arm sets its
        own with the ``exploration_rate`` override. 0 (the default) serves the ranker's page
        unchanged, every logged propensity then 1; set e.g. 0.03 in production to log the
        propensities off-policy estimates need. Off by default because exploration makes pages
        random, which evaluations and page-level tests must not be.
    exploration_pool : int
        Explored clips are drawn from this many best-scored candidates.
    cache_ttl_s : float
        How long the running experiments are cached between store reads.
    """

    model_config = SettingsConfigDict(env_prefix="STEERFEED_EXPERIMENTS_", extra="forbid")

    exploration_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    exploration_pool: int = Field(default=50, ge=1)
    cache_ttl_s: float = Field(default=5.0, ge=0.0)
