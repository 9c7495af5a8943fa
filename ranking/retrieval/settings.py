"""Settings of collaborative retrieval in the engine (env prefix ``STEERFEED_COLLAB_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Name of the learned vector space, in the vector index and in ``user_vectors``.
COLLAB_SPACE = "collab"


class CollabSettings(BaseSettings):
    """How the collab job fits the factors and how the collab source retrieves.

    Unknown options are rejected (``extra="forbid"``) with the list of valid ones.
    """

    model_config = SettingsConfigDict(env_prefix="STEERFEED_COLLAB_", extra="forbid")

    dim: int = Field(default=128, ge=2, le=512, description="factor dimension")
    epochs: int = Field(default=15, ge=1, le=200, description="ALS sweeps")
    reg: float = Field(default=30.0, gt=0, description="L2 penalty on the factors")
    alpha: float = Field(default=0.2, gt=0, description="confidence scale")
    min_user_items: int = Field(
        default=1, ge=1, description="users with fewer engaged clips get no vector"
    )
    seed: int = Field(default=0, description="seed of the initial factors")
    threads: int = Field(default=2, ge=1, le=64, description="torch threads for the fit")
    every_s: int = Field(default=3600, ge=60, description="how often the server refits")
    limit: int = Field(default=200, ge=1, le=2000, description="candidates per request")
    timeout_s: float = Field(default=0.25, gt=0, description="source timeout")
