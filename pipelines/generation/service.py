"""What the API, the CLI and the jobs call: submit prompts under the rules, render queued jobs
into clips (mp4, poster, manifest, provenance), and put those clips into the feed."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from pipelines.generation.errors import RuleViolation, StaleAttemptError
from pipelines.generation.generator import ClipGenerator
from pipelines.generation.media import encode_mp4, write_manifest, write_poster
from pipelines.generation.queue import GenerationJob, GenerationQueue
from pipelines.generation.rules import CameoConsentRegistry, PromptSafety, RightsOptOutRegistry
from pipelines.generation.settings import GenerationSettings, RenderParams
from storage.store import utcnow

if TYPE_CHECKING:
    from pipelines.engine import Engine
    from pipelines.generation.worker import GenerationWorker

logger = logging.getLogger(__name__)

MEDIA_ROUTE = "/media"
CLIP_FOLDER = "clips"
GENERATED_HASHTAG = "ai_generated"


@dataclass(frozen=True)
class ClipFiles:
    """Where one generated clip's files live."""

    video: Path
    poster: Path
    manifest: Path


class GenerationService:
    """The generator attached to one engine (``engine.generation`` after installation).

    Parameters
    ----------
    engine
        The engine whose store, state, embedder and index the clips go into.
    settings
        Generation settings (default: from ``STEERFEED_GEN_*``).
    """

    def __init__(self, engine: Engine, settings: GenerationSettings | None = None) -> None:
        self.engine = engine
        self.settings = settings or GenerationSettings()
        self.queue = GenerationQueue(engine.store)
        self.consents = CameoConsentRegistry(engine.store, engine.state)
        self.optouts = RightsOptOutRegistry(engine.store)
        self.safety = PromptSafety(
            lambda: engine.embedder,
            threshold=self.settings.safety_threshold,
            extra_terms=self.settings.extra_blocked_terms,
        )
        self.media_dir = self.settings.resolved_media_dir(engine.data_dir)
        self._generator: ClipGenerator | None = None
        self._gen_lock = threading.Lock()
        self._id_lock = threading.Lock()
        self._worker: GenerationWorker | None = None

    # -- parts made on first use ----------------------------------------------------------------
    @property
    def generator(self) -> ClipGenerator:
        """The clip generator (its model loads on the first render)."""
        with self._gen_lock:
            if self._generator is None:
                self._generator = ClipGenerator(self.settings)
            return self._generator

    @property
    def worker(self) -> GenerationWorker:
        """The queue worker."""
        from pipelines.generation.worker import GenerationWorker

        with self._gen_lock:
            if self._worker is None:
                self._worker = GenerationWorker(self)
            return self._worker

    # -- rules ----------------------------------------------------------------------------------
    def check(
        self,
        prompt: str,
        *,
        requested_by: int | None,
        cameos: list[int] | None = None,
        remix_of: int | None = None,
    ) -> tuple[str, list[int], list[str]]:
        """Apply every rule to a request; return the prompt to render, the cameo users and the
        topics. Raises :class:`RuleViolation` with the reason."""
        st = self.engine.state
        cameo_ids = list(dict.fromkeys(int(c) for c in cameos or []))
        topics: list[str] = []
        effective = prompt.strip()
        if remix_of is not None:
            row = int(st.rows([remix_of])[0])
            if row < 0:
                msg = f"clip {remix_of} to remix does not exist"
                raise RuleViolation("remix_source", msg)
            original = st.captions[row]
            if self.optouts.matches(f"{original} {' '.join(st.hashtags[row] or [])}"):
                msg = f"clip {remix_of} names an opted-out work and cannot be remixed"
                raise RuleViolation("rights_opt_out", msg)
            cameo_ids = list(dict.fromkeys([*cameo_ids, *st.cameos[row]]))
            topics = list(st.topics[row])
            effective = f"{effective}, remixing: {original}"
        for uid in cameo_ids:
            if uid not in st.users:
                msg = f"cameo user {uid} does not exist"
                raise RuleViolation("cameo_consent", msg)
            self.consents.check(uid, requested_by)
        self.optouts.check(effective)
        self.safety.check(effective)
        return effective, cameo_ids, topics

    def submit(
        self,
        prompt: str,
        *,
        requested_by: int | None,
        remix_of: int | None = None,
        cameos: list[int] | None = None,
        params: RenderParams | None = None,
        kind: str | None = None,
        topics: list[str] | None = None,
        reason: str = "",
    ) -> GenerationJob:
        """Check the rules and queue a job (raises :class:`RuleViolation` when refused)."""
        effective, cameo_ids, remix_topics = self.check(
            prompt, requested_by=requested_by, cameos=cameos, remix_of=remix_of
        )
        job = self.queue.enqueue(
            effective,
            kind=kind or ("remix" if remix_of is not None else "request"),
            requested_by=requested_by,
            remix_of=remix_of,
            cameo_user_ids=cameo_ids,
            topics=list(dict.fromkeys([*(topics or []), *remix_topics])),
            params=(params or RenderParams()).model_dump(exclude_none=True),
            reason=reason,
            max_attempts=self.settings.max_attempts,
        )
        logger.info(
            "generation queued job=%s kind=%s cameos=%d",
            job.job_id,
            job.kind,
            len(cameo_ids),
        )
        return job

    def revoke_consent(self, user_id: int) -> dict[str, Any]:
        """Revoke a user's cameo consent: cancel open jobs with their cameo; their cameo clips
        leave every feed at the next page (``ranking.filters.cameo_consent``)."""
        consent = self.consents.revoke(user_id)
        cancelled = self.queue.cancel(
            self.queue.open_jobs_with_cameo(user_id), f"cameo consent of user {user_id} revoked"
        )
        st = self.engine.state
        with st.lock:
            n_clips = sum(1 for c in st.cameos if user_id in c)
        return {
            "consent": consent.to_dict() if consent else None,
            "cancelled_jobs": cancelled,
            "clips_filtered": n_clips,
        }

    # -- media ----------------------------------------------------------------------------------
    def files(self, item_id: int) -> ClipFiles:
        """Paths of a generated clip's files."""
        base = self.media_dir / CLIP_FOLDER
        return ClipFiles(base / f"{item_id}.mp4", base / f"{item_id}.png", base / f"{item_id}.json")

    def media_url(self, item_id: int) -> str | None:
        """``/media/clips/<id>.mp4`` when the generator wrote that clip, else None."""
        if not self.files(item_id).video.exists():
            return None
        return f"{MEDIA_ROUTE}/{CLIP_FOLDER}/{item_id}.mp4"

    def is_hidden(self, item_id: int) -> bool:
        """Whether a clip is kept out of feeds by a rule (revoked cameo, opted-out name)."""
        st = self.engine.state
        row = int(st.rows([item_id])[0])
        if row < 0:
            return False
        if not self.consents.revoked_users().isdisjoint(st.cameos[row]):
            return True
        return bool(self.optouts.matches(f"{st.captions[row]} {' '.join(st.hashtags[row])}"))

    # -- rendering ------------------------------------------------------------------------------
    def _next_item_id(self) -> int:
        top = self.engine.store.scalar("SELECT coalesce(max(item_id), 0) FROM clips")
        return int(top) + 1

    def render_job(
        self, job: GenerationJob, *, is_current: Callable[[], bool] | None = None
    ) -> int:
        """Render a claimed job into a clip in the store, index and feed; return its id.

        The rules are checked again after rendering (consent may have been revoked or a name
        opted out meanwhile); a job refused then raises :class:`RuleViolation`. When
        ``is_current`` says the attempt was timed out or cancelled meanwhile, nothing is
        written and :class:`StaleAttemptError` is raised.
        """
        t0 = time.perf_counter()
        params = self.settings.render(RenderParams(**job.params))
        rendered = self.generator.render(job.prompt, params)
        for uid in job.cameo_user_ids:
            self.consents.check(uid, job.requested_by)
        self.optouts.check(job.prompt)
        if is_current is not None and not is_current():
            msg = f"job {job.job_id} attempt {job.attempts} was timed out or cancelled"
            raise StaleAttemptError(msg)
        fps = int(params["fps"] or self.settings.fps)
        with self._id_lock:
            item_id = self._next_item_id()
            files = self.files(item_id)
            codec = encode_mp4(rendered.frames, files.video, fps=fps)
            write_poster(rendered.frames, files.poster)
            provenance = {
                **rendered.provenance,
                "job_id": job.job_id,
                "job_kind": job.kind,
                "requested_by": job.requested_by,
                "remix_of": job.remix_of,
                "cameo_user_ids": job.cameo_user_ids,
                "reason": job.reason,
                "codec": codec,
                "fps": fps,
            }
            n = rendered.frames.shape[0]
            clip = pl.DataFrame(
                {
                    "item_id": [item_id],
                    "author_id": [
                        job.requested_by
                        if job.requested_by is not None
                        else self.settings.studio_author_id
                    ],
                    "caption": [job.prompt],
                    "topics": [job.topics],
                    "hashtags": [[GENERATED_HASHTAG]],
                    "duration_s": [n / fps],
                    "created_at": [utcnow()],
                    "is_generated": [True],
                    "remix_of": [job.remix_of],
                    "cameo_user_ids": [job.cameo_user_ids],
                    "provenance": [json.dumps(provenance, sort_keys=True, default=str)],
                },
                schema={
                    "item_id": pl.Int64,
                    "author_id": pl.Int64,
                    "caption": pl.String,
                    "topics": pl.List(pl.String),
                    "hashtags": pl.List(pl.String),
                    "duration_s": pl.Float64,
                    "created_at": pl.Datetime("us"),
                    "is_generated": pl.Boolean,
                    "remix_of": pl.Int64,
                    "cameo_user_ids": pl.List(pl.Int64),
                    "provenance": pl.String,
                },
            )
            self.engine.add_clips(clip)  # embeds the prompt as caption and indexes it
        write_manifest(
            {
                "item_id": item_id,
                "files": {
                    "video": files.video.name,
                    "poster": files.poster.name,
                    "video_url": f"{MEDIA_ROUTE}/{CLIP_FOLDER}/{files.video.name}",
                    "poster_url": f"{MEDIA_ROUTE}/{CLIP_FOLDER}/{files.poster.name}",
                },
                "provenance": provenance,
            },
            files.manifest,
        )
        logger.info(
            "generated clip item=%d job=%s frames=%d seconds=%.2f",
            item_id,
            job.job_id,
            n,
            time.perf_counter() - t0,
        )
        return item_id

    def status(self, job_id: str) -> dict[str, Any]:
        """A job with, once done, its clip's media URLs and provenance."""
        job = self.queue.get(job_id)
        out = job.to_dict()
        if job.item_id is not None:
            out["video_url"] = self.media_url(job.item_id)
            out["poster_url"] = (
                f"{MEDIA_ROUTE}/{CLIP_FOLDER}/{job.item_id}.png" if out["video_url"] else None
            )
            prov = self.engine.store.scalar(
                "SELECT provenance FROM clips WHERE item_id = ?", [job.item_id]
            )
            out["provenance"] = json.loads(prov) if prov else None
        return out

    def health(self) -> dict[str, Any]:
        """Model and queue state (never degrades the feed)."""
        counts = self.queue.counts()
        return {
            "model": self.settings.model,
            "model_loaded": self._generator is not None and self._generator.device is not None,
            "queue": counts,
        }
