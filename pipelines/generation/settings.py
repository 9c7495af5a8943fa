"""Generation settings (env prefix ``STEERFEED_GEN_``) and per-clip render parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RenderParams(BaseModel):
    """How one clip is rendered; fields left unset take the settings' defaults."""

    model_config = ConfigDict(extra="forbid")

    num_frames: int | None = Field(default=None, ge=1, le=256)
    height: int | None = Field(default=None, ge=8, le=2048, multiple_of=8)
    width: int | None = Field(default=None, ge=8, le=2048, multiple_of=8)
    steps: int | None = Field(default=None, ge=1, le=200)
    guidance: float | None = Field(default=None, ge=0.0, le=30.0)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    fps: int | None = Field(default=None, ge=1, le=60)


class GenerationSettings(BaseSettings):
    """The clip generator (env prefix ``STEERFEED_GEN_``).

    ``model`` is a local folder written by ``save_pretrained`` or a Hugging Face model id
    already in the local cache; nothing is ever downloaded (``HF_HUB_OFFLINE=1``). With no
    model the queue still accepts requests; jobs fail with a clear error until one is set.
    """

    # ``none`` in an environment variable sets an optional setting to None.
    model_config = SettingsConfigDict(
        env_prefix="STEERFEED_GEN_", extra="forbid", env_parse_none_str="none"
    )

    model: str | None = None
    media_dir: Path | None = Field(default=None, description="default: DATA_DIR/media")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    torch_threads: int | None = Field(default=None, ge=1, description="CPU threads for torch")
    # Default render parameters (a real model wants more frames, size and steps).
    num_frames: int = Field(default=16, ge=1, le=256)
    height: int = Field(default=256, ge=8, le=2048, multiple_of=8)
    width: int = Field(default=256, ge=8, le=2048, multiple_of=8)
    steps: int = Field(default=25, ge=1, le=200)
    guidance: float = Field(default=7.5, ge=0.0, le=30.0)
    seed: int | None = Field(default=None, ge=0, description="fixed seed; None draws one per clip")
    fps: int = Field(default=8, ge=1, le=60)
    # The queue and the worker.
    max_concurrency: int = Field(default=1, ge=1, le=16)
    max_attempts: int = Field(default=3, ge=1, le=20)
    retry_backoff_s: float = Field(default=30.0, ge=0.0)
    timeout_s: float = Field(default=900.0, gt=0.0)
    worker_every_s: int = Field(default=15, ge=1)
    # Gap filling.
    gaps_every_s: int = Field(default=3600, ge=60)
    gap_mood_threshold: float = Field(
        default=0.45, ge=-1.0, le=1.0, description="best-clip cosine below which a facet is a gap"
    )
    gap_topic_min_fresh: int = Field(default=3, ge=0)
    gap_fresh_hours: float = Field(default=72.0, gt=0.0)
    gap_max_prompts: int = Field(default=5, ge=0, le=100)
    gap_dedupe_hours: float = Field(default=24.0, ge=0.0)
    studio_author_id: int = Field(default=999_999_999, description="author of gap-filling clips")
    # Prompt safety.
    safety_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    extra_blocked_terms: list[str] = Field(default_factory=list)
    # Name matching (rights-holder opt-outs, protected people). Both thresholds are the lowest
    # with no false positive on the tuning part of tests/pipelines/data/name_match_labels.csv.
    name_fuzzy_threshold: float = Field(default=81.0, ge=50.0, le=100.0)
    name_embedding_threshold: float | None = Field(
        default=0.84, ge=0.0, le=1.0, description="None turns the embedding way off"
    )
    protected_starter: bool = Field(
        default=True, description="include the packaged starter list of protected people"
    )
    # Provenance: a C2PA manifest signed into every mp4, and a visible label on the frames.
    watermark: bool = True
    watermark_text: str = Field(default="AI-generated", min_length=1, max_length=40)
    provenance_dir: Path | None = Field(
        default=None, description="signing key and certificates; default: DATA_DIR/provenance"
    )
    # Review of rendered frames before a clip enters any feed.
    review_encoder: str | None = Field(
        default=None, description="CLIP model folder or cached id; None: no concept check"
    )
    review_threshold: float = Field(
        default=0.28, ge=-1.0, le=1.0, description="frame-to-concept cosine that holds a clip"
    )
    review_sample_frames: int = Field(default=4, ge=1, le=64)
    review_hash_distance: int = Field(
        default=6, ge=0, le=32, description="Hamming distance to a taken-down frame that holds"
    )
    # User reports: the first queues a clip for review, this many distinct reporters hide it.
    report_hide_threshold: int = Field(default=3, ge=1, le=1000)
    report_scope: Literal["generated", "all"] = "generated"
    # The "made for your mood" source.
    source_limit: int = Field(default=30, ge=1, le=500)
    source_min_similarity: float = Field(default=0.3, ge=-1.0, le=1.0)

    def resolved_provenance_dir(self, data_dir: Path) -> Path:
        """Where the provenance signing key and certificates live."""
        return self.provenance_dir if self.provenance_dir is not None else data_dir / "provenance"

    def resolved_media_dir(self, data_dir: Path) -> Path:
        """Where mp4s, posters and manifests are written."""
        return self.media_dir if self.media_dir is not None else data_dir / "media"

    def render(self, params: RenderParams | None = None) -> dict[str, int | float | None]:
        """Merge request parameters over the defaults."""
        p = params or RenderParams()
        return {
            "num_frames": p.num_frames or self.num_frames,
            "height": p.height or self.height,
            "width": p.width or self.width,
            "steps": p.steps or self.steps,
            "guidance": p.guidance if p.guidance is not None else self.guidance,
            "seed": p.seed if p.seed is not None else self.seed,
            "fps": p.fps or self.fps,
        }
