"""The text-to-video generator: a diffusers pipeline loaded from disk, run on CUDA or the CPU.

The model is loaded on first use (never at install time) from ``GenerationSettings.model``: a
local folder written by ``save_pretrained`` or a Hugging Face id already in the local cache.
Nothing is downloaded: ``HF_HUB_OFFLINE=1`` and ``local_files_only=True``. Up to
``max_concurrency`` pipeline copies are loaded, one per clip rendered at the same time.
"""

from __future__ import annotations

import inspect
import logging
import os
import queue
import secrets
import threading
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.generation.errors import ModelUnavailableError
from pipelines.generation.media import to_uint8_frames
from pipelines.generation.settings import GenerationSettings

logger = logging.getLogger(__name__)


@dataclass
class RenderedClip:
    """Frames of one rendered clip and how they were made."""

    frames: np.ndarray
    provenance: dict[str, Any]


def resolve_device(choice: str) -> str:
    """``cuda`` when asked for or when ``auto`` finds a GPU, else ``cpu``."""
    import torch

    if choice == "cuda" and not torch.cuda.is_available():
        msg = "STEERFEED_GEN_DEVICE=cuda but no CUDA device is visible; use auto or cpu"
        raise ModelUnavailableError(msg)
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


class ClipGenerator:
    """Renders clips from prompts with a diffusers text-to-video pipeline.

    Parameters
    ----------
    settings
        Model, device, dtype and default render parameters.
    show_progress
        Show diffusers' denoising progress bar (the CLI does; the worker does not).
    """

    def __init__(self, settings: GenerationSettings, *, show_progress: bool = False) -> None:
        self.settings = settings
        self.show_progress = show_progress
        self._pool: queue.Queue[Any] = queue.Queue()
        self._loaded = 0
        self._load_lock = threading.Lock()
        self.device: str | None = None
        self.load_seconds: float | None = None

    @property
    def model_name(self) -> str | None:
        """The configured model (folder or id), or None."""
        return self.settings.model

    def _load_one(self) -> Any:
        model = self.settings.model
        if not model:
            msg = (
                "no text-to-video model configured; set STEERFEED_GEN_MODEL to a local folder "
                "(save_pretrained output) or a model id already in the Hugging Face cache"
            )
            raise ModelUnavailableError(msg)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from diffusers import DiffusionPipeline

        if self.settings.torch_threads:
            torch.set_num_threads(self.settings.torch_threads)
        device = resolve_device(self.settings.device)
        dtype = {
            "float32": torch.float32,
            "float16": torch.float16,
            "bfloat16": torch.bfloat16,
        }.get(self.settings.dtype, torch.float16 if device == "cuda" else torch.float32)
        source = str(Path(model)) if Path(model).exists() else model
        t0 = time.perf_counter()
        try:
            # Newer diffusers call it ``dtype`` and warn on ``torch_dtype``, which every
            # version still accepts.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
                pipe = DiffusionPipeline.from_pretrained(
                    source, torch_dtype=dtype, local_files_only=True
                )
        except Exception as exc:
            msg = (
                f"cannot load text-to-video model {model!r} from disk ({type(exc).__name__}: "
                f"{exc}); give a save_pretrained folder or a model id in the local cache"
            )
            raise ModelUnavailableError(msg) from exc
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=not self.show_progress)
        self.device = device
        self.load_seconds = time.perf_counter() - t0
        logger.info(
            "loaded text-to-video model %s (%s) on %s in %.1f s",
            model,
            type(pipe).__name__,
            device,
            self.load_seconds,
        )
        return pipe

    def _borrow(self) -> Any:
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            pass
        with self._load_lock:
            if self._loaded < self.settings.max_concurrency:
                pipe = self._load_one()
                self._loaded += 1
                return pipe
        return self._pool.get()

    def render(self, prompt: str, params: dict[str, Any]) -> RenderedClip:
        """Render one clip.

        Parameters
        ----------
        prompt
            What the clip shows.
        params
            ``num_frames``, ``height``, ``width``, ``steps``, ``guidance``, ``seed`` (None draws
            one) and ``fps`` (see :meth:`GenerationSettings.render`).

        Returns
        -------
        RenderedClip
            uint8 frames ``(n, h, w, 3)`` and the provenance record.
        """
        import torch

        seed = params.get("seed")
        seed = int(seed) if seed is not None else secrets.randbelow(2**31)
        pipe = self._borrow()
        try:
            t0 = time.perf_counter()
            gen_device = "cuda" if self.device == "cuda" else "cpu"
            generator = torch.Generator(gen_device).manual_seed(seed)
            kwargs: dict[str, Any] = {
                "prompt": prompt,
                "num_frames": int(params["num_frames"]),
                "height": int(params["height"]),
                "width": int(params["width"]),
                "num_inference_steps": int(params["steps"]),
                "guidance_scale": float(params["guidance"]),
                "generator": generator,
                "output_type": "np",
            }
            accepted = inspect.signature(pipe.__call__).parameters
            if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
                dropped = sorted(k for k in kwargs if k not in accepted)
                if dropped:
                    logger.info("pipeline %s ignores %s", type(pipe).__name__, dropped)
                kwargs = {k: v for k, v in kwargs.items() if k in accepted}
            with torch.inference_mode():
                out = pipe(**kwargs)
            frames = to_uint8_frames(getattr(out, "frames", out))
            seconds = time.perf_counter() - t0
        finally:
            self._pool.put(pipe)
        import diffusers

        provenance = {
            "is_generated": True,
            "generator": "steerfeed",
            "model": self.settings.model,
            "pipeline_class": type(pipe).__name__,
            "diffusers_version": diffusers.__version__,
            "device": self.device,
            "prompt": prompt,
            "seed": seed,
            "params": {**params, "seed": seed},
            "frames": int(frames.shape[0]),
            "generated_at": datetime.now(UTC).isoformat(),
            "render_seconds": round(seconds, 3),
        }
        logger.info(
            "rendered clip model=%s frames=%d size=%dx%d steps=%s seconds=%.2f",
            self.settings.model,
            frames.shape[0],
            frames.shape[2],
            frames.shape[1],
            params.get("steps"),
            seconds,
        )
        return RenderedClip(frames=frames, provenance=provenance)
