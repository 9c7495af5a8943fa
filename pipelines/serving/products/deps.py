"""What the products are built from: the engine's typed services (passed in, never globals)."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.experiments.repository import ExperimentRepository
from pipelines.experiments.settings import ExperimentSettings
from pipelines.generation.media_access import MediaAccess
from pipelines.generation.service import GenerationService
from ranking.data_controls import DataControlsService
from ranking.learned.serving import LearnedModels
from ranking.locality import ClipCities
from ranking.retrieval.services import CollabServices
from ranking.scorers.hand_weighted import HandWeights
from ranking.side_effects.log_impressions import EventSink
from ranking.state import FeedState
from steering.services import SteeringServices
from storage.index.base import VectorIndex
from wellbeing.service import WellbeingServices


@dataclass(frozen=True)
class ProductDeps:
    """Every service a product's components are built from.

    ``index`` is the only part that can be absent (the vector index failed to open: the ANN
    sources say they are disabled and the feed serves without them).
    """

    state: FeedState
    index: VectorIndex | None
    events: EventSink
    hand_weights: HandWeights
    max_per_author: int
    learned: LearnedModels
    collab: CollabServices
    steering: SteeringServices
    wellbeing: WellbeingServices
    generation: GenerationService
    media_access: MediaAccess
    experiments: ExperimentRepository
    experiment_settings: ExperimentSettings
    data_controls: DataControlsService
    clip_cities: ClipCities
    local_boost: float
