"""Review of what was rendered, user reports, and takedowns.

**Frame review** (:class:`FrameReviewer`) runs on every rendered clip before it is stored, so a
flagged clip never enters a feed; it is *held* for an admin instead. Two checks:

- *known-bad frames*, always on: a 64-bit difference hash (dHash) of sampled frames against the
  hashes of frames of clips taken down before. It catches re-renders and near copies of
  content already taken down (same prompt and seed, small edits), and nothing new.
- *concepts*, when ``STEERFEED_GEN_REVIEW_ENCODER`` names a CLIP model (a local folder or a
  model id in the Hugging Face cache; never downloaded): sampled frames are embedded by its
  image tower and compared with its text tower's embeddings of the disallowed concepts'
  anchor phrases (the same concepts the prompt check uses). What this catches is what that CLIP
  model recognises zero-shot; the threshold must be measured for the model on the operator's
  own labelled frames. The tests use a tiny untrained CLIP (real transformers classes), which
  recognises nothing: they check the mechanism, not the judgement.

**Review queue** (table ``clip_reviews``, :class:`ClipReviews`): a clip enters it when frame
review holds it, when a user first reports it (it stays visible), when
``report_hide_threshold`` distinct users have reported it (it is hidden), or when a rights
holder or an admin takes it down. An admin restores it or takes it down. Hidden means every
feed filters it (:class:`ranking.filters.clip_review.ClipReviewFilter`) and its media answer
410.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from pipelines.generation.errors import GenerationError, ModelUnavailableError
from pipelines.generation.rules import DISALLOWED_CONCEPTS
from storage.store import Store, utcnow

logger = logging.getLogger(__name__)

REVIEW_STATUSES = ("pending", "held", "taken_down", "restored")
HIDDEN_STATUSES = frozenset({"held", "taken_down"})
REVIEW_SOURCES = ("frames", "reports", "holder", "admin")


class UnknownReviewError(GenerationError):
    """A clip with no review entry."""


# -- frames --------------------------------------------------------------------------------------
def sample_frames(frames: np.ndarray, k: int) -> np.ndarray:
    """``k`` frames evenly spread over the clip (all of them when it has fewer)."""
    n = frames.shape[0]
    if n <= k:
        return frames
    idx = np.linspace(0, n - 1, k).round().astype(int)
    return np.asarray(frames[idx])


def dhash(frame: np.ndarray) -> int:
    """64-bit difference hash: a 9x8 grey thumbnail, one bit per horizontal gradient sign."""
    img = Image.fromarray(frame).convert("L").resize((9, 8), Image.Resampling.LANCZOS)
    px = np.asarray(img, dtype=np.int16)
    bits = (px[:, 1:] > px[:, :-1]).flatten()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def hamming(a: int, b: int) -> int:
    """Number of differing bits."""
    return (a ^ b).bit_count()


class FrameEncoder(Protocol):
    """An image-text encoder: frames and texts into one unit-norm space."""

    def embed_images(self, frames: np.ndarray) -> np.ndarray:
        """``(n, h, w, 3)`` uint8 frames -> ``(n, d)`` unit vectors."""
        ...

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Texts -> ``(len(texts), d)`` unit vectors."""
        ...


class ClipFrameEncoder:
    """A CLIP model (transformers ``CLIPModel`` and its processor) loaded from disk.

    Parameters
    ----------
    model
        A local folder (``save_pretrained`` of the model and the processor) or a model id in the
        local Hugging Face cache; nothing is downloaded.
    """

    def __init__(self, model: str) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import CLIPModel, CLIPProcessor

        source = str(Path(model)) if Path(model).exists() else model
        try:
            self.model = CLIPModel.from_pretrained(source, local_files_only=True).eval()
            self.processor = CLIPProcessor.from_pretrained(source, local_files_only=True)
        except Exception as exc:
            msg = (
                f"cannot load review encoder {model!r} from disk ({type(exc).__name__}: {exc}); "
                "give a CLIP save_pretrained folder or a model id in the local cache"
            )
            raise ModelUnavailableError(msg) from exc
        self.name = model
        self._torch = torch
        self._lock = threading.Lock()

    @staticmethod
    def _unit(x: Any) -> np.ndarray:
        if hasattr(x, "pooler_output") and not hasattr(x, "detach"):
            x = x.pooler_output  # newer transformers return an output object
        arr = x.detach().float().cpu().numpy()
        return np.asarray(arr / np.maximum(np.linalg.norm(arr, axis=1, keepdims=True), 1e-12))

    def embed_images(self, frames: np.ndarray) -> np.ndarray:
        """Image-tower embeddings of the frames."""
        with self._lock, self._torch.inference_mode():
            inputs = self.processor(
                images=[Image.fromarray(f) for f in frames], return_tensors="pt"
            )
            return self._unit(self.model.get_image_features(pixel_values=inputs["pixel_values"]))

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Text-tower embeddings of the texts."""
        with self._lock, self._torch.inference_mode():
            inputs = self.processor(text=texts, return_tensors="pt", padding=True, truncation=True)
            return self._unit(
                self.model.get_text_features(
                    input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
                )
            )


@dataclass
class FrameVerdict:
    """What frame review found: ``held`` with a reason, and the figures behind it."""

    held: bool
    reason: str = ""
    concept: str | None = None
    similarity: float | None = None
    matched_item: int | None = None
    hash_distance: int | None = None
    hashes: list[int] = field(default_factory=list)
    encoder: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (without the hashes)."""
        return {
            "held": self.held,
            "reason": self.reason,
            "concept": self.concept,
            "similarity": self.similarity,
            "matched_item": self.matched_item,
            "hash_distance": self.hash_distance,
            "encoder": self.encoder,
        }


class FrameReviewer:
    """Checks rendered frames before a clip is stored.

    Parameters
    ----------
    store
        Holds ``blocked_frame_hashes``.
    encoder
        Returns the image-text encoder, or None when no concept check is configured.
    threshold
        Frame-to-concept cosine at or above which a clip is held.
    sample
        Frames sampled per clip.
    hash_distance
        Hamming distance to a taken-down frame's hash at or below which a clip is held.
    """

    def __init__(
        self,
        store: Store,
        encoder: Callable[[], FrameEncoder | None],
        *,
        threshold: float,
        sample: int,
        hash_distance: int,
        concepts: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.store = store
        self._encoder = encoder
        self.threshold = threshold
        self.sample = sample
        self.hash_distance = hash_distance
        self.concepts = concepts or DISALLOWED_CONCEPTS
        self._labels = [k for k, v in self.concepts.items() for _ in v]
        self._anchors: np.ndarray | None = None
        self._lock = threading.Lock()

    def _anchor_matrix(self, enc: FrameEncoder) -> np.ndarray:
        with self._lock:
            if self._anchors is None:
                phrases = [f"a photo of {a}" for v in self.concepts.values() for a in v]
                self._anchors = enc.embed_texts(phrases)
            return self._anchors

    def concept_scores(self, frames: np.ndarray) -> dict[str, float] | None:
        """Best cosine of any sampled frame to each concept (None without an encoder)."""
        enc = self._encoder()
        if enc is None:
            return None
        sims = enc.embed_images(sample_frames(frames, self.sample)) @ self._anchor_matrix(enc).T
        best = sims.max(axis=0)
        out: dict[str, float] = {}
        for label, s in zip(self._labels, best.tolist(), strict=True):
            out[label] = max(out.get(label, -1.0), round(float(s), 4))
        return out

    def blocked_hashes(self) -> list[tuple[int, int]]:
        """``(item_id, hash)`` of every taken-down frame."""
        rows = (
            self.store.cursor().execute("SELECT item_id, hash FROM blocked_frame_hashes").fetchall()
        )
        return [(int(r[0]), int(r[1])) for r in rows]

    def review(self, frames: np.ndarray) -> FrameVerdict:
        """Hold the clip when a frame is close to a taken-down frame or to a concept."""
        hashes = self.hash_frames(frames)
        verdict = FrameVerdict(held=False, hashes=hashes)
        best: tuple[int, int] | None = None
        for item, hb in self.blocked_hashes():
            d = min(hamming(h, hb) for h in hashes)
            if best is None or d < best[0]:
                best = (d, item)
        if best is not None and best[0] <= self.hash_distance:
            verdict.held = True
            verdict.matched_item, verdict.hash_distance = best[1], best[0]
            verdict.reason = (
                f"frames match clip {best[1]}, which was taken down (hash distance {best[0]} "
                f"<= {self.hash_distance})"
            )
            return verdict
        scores = self.concept_scores(frames)
        if scores is not None:
            enc = self._encoder()
            verdict.encoder = getattr(enc, "name", type(enc).__name__)
            concept = max(scores, key=lambda k: scores[k])
            verdict.concept, verdict.similarity = concept, scores[concept]
            if scores[concept] >= self.threshold:
                verdict.held = True
                verdict.reason = (
                    f"frames are close to a disallowed concept ({concept}, similarity "
                    f"{scores[concept]:.3f} >= {self.threshold:.3f})"
                )
        return verdict

    def hash_frames(self, frames: np.ndarray) -> list[int]:
        """dHashes of the sampled frames."""
        return [dhash(f) for f in sample_frames(frames, self.sample)]

    def block_hashes(self, item_id: int, hashes: list[int]) -> int:
        """Remember a taken-down clip's frame hashes; return how many."""
        with self.store.write() as cur:
            for i, h in enumerate(hashes):
                cur.execute(
                    "INSERT OR REPLACE INTO blocked_frame_hashes (item_id, frame, hash, added_at) "
                    "VALUES (?, ?, ?, ?)",
                    [item_id, i, h, utcnow()],
                )
        return len(hashes)

    def unblock_frames(self, item_id: int) -> None:
        """Forget a clip's frame hashes (it was restored)."""
        with self.store.write() as cur:
            cur.execute("DELETE FROM blocked_frame_hashes WHERE item_id = ?", [item_id])


# -- the review queue ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ClipReview:
    """A clip's entry in the review queue."""

    item_id: int
    status: str
    source: str
    reason: str
    reports: int
    reports_at_decision: int
    holder_id: str | None
    details: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    decided_at: datetime | None
    decided_by: str | None

    @property
    def hidden(self) -> bool:
        """Whether feeds and media keep the clip out."""
        return self.status in HIDDEN_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "item_id": self.item_id,
            "status": self.status,
            "hidden": self.hidden,
            "source": self.source,
            "reason": self.reason,
            "reports": self.reports,
            "holder_id": self.holder_id,
            "details": self.details,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "decided_by": self.decided_by,
        }


_REVIEW_COLS = (
    "item_id, status, source, reason, reports, reports_at_decision, holder_id, details, "
    "created_at, updated_at, decided_at, decided_by"
)


def _review(r: tuple[Any, ...]) -> ClipReview:
    return ClipReview(
        int(r[0]), r[1], r[2], r[3], int(r[4]), int(r[5]), r[6], json.loads(r[7] or "{}"),
        r[8], r[9], r[10], r[11],
    )  # fmt: skip


class ClipReviews:
    """The review queue (``clip_reviews``), with the hidden clips cached for filters.

    ``version`` changes with every write so filters know to reload.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._hidden: dict[int, str] | None = None
        self.version = 0

    def get(self, item_id: int) -> ClipReview | None:
        """A clip's entry, or None."""
        rows = (
            self.store.cursor()
            .execute(f"SELECT {_REVIEW_COLS} FROM clip_reviews WHERE item_id = ?", [item_id])  # noqa: S608
            .fetchall()
        )
        return _review(rows[0]) if rows else None

    def list_reviews(self, *, status: str | None = None, limit: int = 100) -> list[ClipReview]:
        """Entries, the ones waiting for an admin first, then newest first."""
        where, params = ("WHERE status = ?", [status]) if status else ("", [])
        rows = (
            self.store.cursor()
            .execute(
                f"SELECT {_REVIEW_COLS} FROM clip_reviews {where} ORDER BY "  # noqa: S608
                "CASE WHEN decided_at IS NULL THEN 0 ELSE 1 END, updated_at DESC LIMIT ?",
                [*params, limit],
            )
            .fetchall()
        )
        return [_review(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Entries per status."""
        rows = (
            self.store.cursor()
            .execute("SELECT status, count(*) FROM clip_reviews GROUP BY 1")
            .fetchall()
        )
        return {str(r[0]): int(r[1]) for r in rows}

    def put(
        self,
        item_id: int,
        *,
        status: str,
        source: str,
        reason: str,
        reports: int | None = None,
        holder_id: str | None = None,
        details: dict[str, Any] | None = None,
        decided_by: str | None = None,
    ) -> ClipReview:
        """Create or update a clip's entry (a decision when ``decided_by`` is given)."""
        if status not in REVIEW_STATUSES or source not in REVIEW_SOURCES:
            msg = f"bad review status {status!r} or source {source!r}"
            raise ValueError(msg)
        now = utcnow()
        prev = self.get(item_id)
        n_reports = reports if reports is not None else (prev.reports if prev else 0)
        decided = decided_by is not None
        with self.store.write() as cur:
            cur.execute(
                f"INSERT INTO clip_reviews ({_REVIEW_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "  # noqa: S608
                "?, ?) ON CONFLICT (item_id) DO UPDATE SET status = excluded.status, "
                "source = excluded.source, reason = excluded.reason, "
                "reports = excluded.reports, reports_at_decision = excluded.reports_at_decision, "
                "holder_id = excluded.holder_id, details = excluded.details, "
                "updated_at = excluded.updated_at, decided_at = excluded.decided_at, "
                "decided_by = excluded.decided_by",
                [
                    item_id,
                    status,
                    source,
                    reason,
                    n_reports,
                    n_reports if decided else (prev.reports_at_decision if prev else 0),
                    holder_id,
                    json.dumps(details or {}, default=str),
                    prev.created_at if prev else now,
                    now,
                    now if decided else None,
                    decided_by,
                ],
            )
        self._invalidate()
        got = self.get(item_id)
        assert got is not None
        return got

    def forget(self, item_id: int) -> None:
        """Drop a clip's entry (a fresh clip id that a crashed render had used)."""
        with self.store.write() as cur:
            n = cur.execute(
                "DELETE FROM clip_reviews WHERE item_id = ? RETURNING item_id", [item_id]
            ).fetchall()
        if n:
            self._invalidate()

    def set_reports(self, item_id: int, reports: int) -> None:
        """Update the report count only."""
        with self.store.write() as cur:
            cur.execute(
                "UPDATE clip_reviews SET reports = ?, updated_at = ? WHERE item_id = ?",
                [reports, utcnow(), item_id],
            )

    def invalidate(self) -> None:
        """Read the hidden clips from the store again on next use (another worker reviewed
        one)."""
        self._invalidate()

    def _invalidate(self) -> None:
        with self._lock:
            self._hidden = None
            self.version += 1

    def hidden(self) -> dict[int, str]:
        """Hidden clips and why (cached until the next write)."""
        with self._lock:
            if self._hidden is None:
                rows = (
                    self.store.cursor()
                    .execute(
                        "SELECT item_id, status, reason FROM clip_reviews WHERE status IN "
                        "('held', 'taken_down')"
                    )
                    .fetchall()
                )
                self._hidden = {
                    int(r[0]): ("taken down" if r[1] == "taken_down" else "held for review")
                    + (f": {r[2]}" if r[2] else "")
                    for r in rows
                }
            return self._hidden
