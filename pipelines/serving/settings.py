"""The root settings object: one section per package, built once and passed in.

Each package keeps its own settings class and env prefix (``STEERFEED_FEED_``,
``STEERFEED_LEARNED_``, ``STEERFEED_WELLBEING_`` ...); :class:`SteerfeedSettings` nests them.
The CLI and the app factory build it once (from the environment) and hand it to the
:class:`~pipelines.serving.engine.Engine`; nothing below builds a settings object of its own.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from features.embedding import EmbeddingSettings
from pipelines.experiments.settings import ExperimentSettings
from pipelines.generation.settings import GenerationSettings
from pipelines.serving.telemetry.settings import TelemetrySettings
from ranking.learned.history_training import HistoryTrainSettings
from ranking.learned.serving import LearnedServingSettings
from ranking.learned.training import TrainSettings
from ranking.retrieval.settings import CollabSettings
from ranking.scorers.hand_weighted import HandWeights
from storage.settings import StorageSettings
from wellbeing.settings import WellbeingSettings


class SettingsError(ValueError):
    """An unknown settings section or option."""


class FeedSettings(BaseSettings):
    """Feed behaviour (env prefix ``STEERFEED_FEED_``)."""

    model_config = SettingsConfigDict(env_prefix="STEERFEED_FEED_", extra="forbid")

    default_limit: int = Field(default=20, ge=1, le=100)
    max_limit: int = Field(default=100, ge=1, le=500)
    max_per_author: int = Field(default=2, ge=1)
    session_gap_s: int = Field(default=1800, ge=60)
    # Threads of the BLAS library (OpenBLAS) in this process; None leaves its default (one per
    # core). A page's matrix products are small: waking BLAS worker threads for them cost
    # more than the products (measured: page p50 44-47 vs 23-24 ms on a busy 2-core machine).
    blas_threads: int | None = Field(default=1, ge=1)
    # How far a clip made in the person's city rises (standard deviations of the page's
    # scores); only for people who allow location and have a city. 0 turns the boost off.
    local_boost: float = Field(default=0.3, ge=0.0, le=2.0)


class FollowSettings(BaseSettings):
    """Following the shared store's event log and change feed (env prefix
    ``STEERFEED_FOLLOW_``; PostgreSQL only, see ``pipelines/serving/follower.py``)."""

    model_config = SettingsConfigDict(env_prefix="STEERFEED_FOLLOW_", extra="forbid")

    # None: follow whenever the store is PostgreSQL (other workers, jobs and the CLI write
    # there); False: never (a single writer that wants no polling).
    enabled: bool | None = None
    # Seconds between reads when the last one found nothing new (each is two indexed queries).
    interval_s: float = Field(default=0.05, gt=0, le=10)
    # Rows read at most per table per pass (a pass that fills it reads again at once).
    batch_rows: int = Field(default=20_000, ge=100, le=1_000_000)
    # How long a hole in the change feed's numbers is reread before it counts as rolled back:
    # longer than any transaction that writes to a followed table (an erasure takes seconds).
    gap_timeout_s: float = Field(default=120.0, gt=0, le=3600)
    # Change-feed rows older than this are deleted by the follow job (workers read them in
    # well under a second; a worker down longer reloads its state at start).
    keep_changes_s: float = Field(default=86_400.0, ge=600)


class TrainJobSettings(BaseSettings):
    """The train job's promotion policy (env prefix ``STEERFEED_TRAINJOB_``)."""

    model_config = SettingsConfigDict(env_prefix="STEERFEED_TRAINJOB_", extra="forbid")

    min_gain: float = Field(default=0.0, ge=0.0, description="NDCG@10 margin to promote")
    replay_missing: bool = Field(
        default=True, description="replay features for impressions logged without them"
    )


class SteerfeedSettings(BaseModel):
    """Every package's settings, one section each (each read from its own env prefix)."""

    model_config = ConfigDict(extra="forbid")

    storage: StorageSettings = Field(default_factory=StorageSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    feed: FeedSettings = Field(default_factory=FeedSettings)
    hand_weights: HandWeights = Field(default_factory=HandWeights)
    learned: LearnedServingSettings = Field(default_factory=LearnedServingSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    train_job: TrainJobSettings = Field(default_factory=TrainJobSettings)
    train_history: HistoryTrainSettings = Field(default_factory=HistoryTrainSettings)
    collab: CollabSettings = Field(default_factory=CollabSettings)
    wellbeing: WellbeingSettings = Field(default_factory=WellbeingSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    experiments: ExperimentSettings = Field(default_factory=ExperimentSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    follow: FollowSettings = Field(default_factory=FollowSettings)

    @model_validator(mode="before")
    @classmethod
    def _known_sections(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(cls.model_fields))
            if unknown:
                valid = ", ".join(cls.model_fields)
                msg = f"unknown settings section(s) {unknown}; valid: {valid}"
                raise SettingsError(msg)
            for name, section in data.items():
                model = cls.model_fields[name].annotation
                if isinstance(section, dict) and isinstance(model, type):
                    fields = getattr(model, "model_fields", {})
                    bad = sorted(set(section) - set(fields))
                    if bad:
                        msg = f"unknown option(s) {bad} in {name}; valid: {', '.join(fields)}"
                        raise SettingsError(msg)
        return data
