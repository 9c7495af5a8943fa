"""What the API, the CLI and the jobs call: submit prompts under the rules, render queued jobs
into clips (frame review, visible label, mp4 with a signed C2PA manifest, poster, sidecar
manifest), put those clips into the feed, and withdraw them (reports, takedowns, review)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import polars as pl

from features.embedding import TextEmbedder
from pipelines.generation.errors import RuleViolation, StaleAttemptError
from pipelines.generation.generator import ClipGenerator
from pipelines.generation.media import encode_mp4, watermark, write_manifest, write_poster
from pipelines.generation.people import ProtectedPeopleRegistry
from pipelines.generation.provenance import ASSERTION, ProvenanceSigner
from pipelines.generation.queue import GenerationJob, GenerationQueue
from pipelines.generation.review import (
    ClipFrameEncoder,
    ClipReview,
    ClipReviews,
    FrameEncoder,
    FrameReviewer,
    UnknownReviewError,
)
from pipelines.generation.rights import RightsHolderRegistry, RightsOptOutRegistry
from pipelines.generation.rules import CameoConsentRegistry, PromptSafety
from pipelines.generation.settings import GenerationSettings, RenderParams
from ranking.state import FeedState
from storage.fence import UserFence
from storage.store import Store, utcnow

if TYPE_CHECKING:
    from pipelines.generation.worker import GenerationWorker

logger = logging.getLogger(__name__)

MEDIA_ROUTE = "/media"
CLIP_FOLDER = "clips"
GENERATED_HASHTAG = "ai_generated"


class GenerationHost(Protocol):
    """What the generator needs of the engine it serves (the serving engine satisfies it):
    the store, the serving state, the data folder, the users' in-flight fence (a render is
    work of everyone it names), the caption embedder, and a way to add a finished clip
    (stored, embedded and indexed)."""

    store: Store
    state: FeedState
    data_dir: Path
    fence: UserFence

    @property
    def embedder(self) -> TextEmbedder:
        """The caption embedder."""
        ...

    def add_clips(self, clips: pl.DataFrame, *, embed: bool = True) -> int:
        """Insert clips and make them servable."""
        ...


@dataclass(frozen=True)
class ClipFiles:
    """Where one generated clip's files live."""

    video: Path
    poster: Path
    manifest: Path


class GenerationService:
    """The generator of one engine (``engine.generation``).

    Parameters
    ----------
    engine
        The engine whose store, state, embedder and index the clips go into.
    settings
        Generation settings (``STEERFEED_GEN_*``, a section of the root settings).
    """

    def __init__(self, engine: GenerationHost, settings: GenerationSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.queue = GenerationQueue(engine.store)
        self.consents = CameoConsentRegistry(engine.store, engine.state)
        s = self.settings
        self.optouts = RightsOptOutRegistry(
            engine.store,
            fuzzy_threshold=s.name_fuzzy_threshold,
            embedding_threshold=s.name_embedding_threshold,
            embedder=lambda: engine.embedder,
        )
        self.holders = RightsHolderRegistry(engine.store, self.optouts)
        self.people = ProtectedPeopleRegistry(
            engine.store,
            starter=s.protected_starter,
            fuzzy_threshold=s.name_fuzzy_threshold,
            embedding_threshold=s.name_embedding_threshold,
            embedder=lambda: engine.embedder,
        )
        self.safety = PromptSafety(
            lambda: engine.embedder,
            threshold=s.safety_threshold,
            extra_terms=s.extra_blocked_terms,
        )
        self.reviews = ClipReviews(engine.store)
        self.frames = FrameReviewer(
            engine.store,
            self._review_encoder,
            threshold=s.review_threshold,
            sample=s.review_sample_frames,
            hash_distance=s.review_hash_distance,
        )
        self.signer = ProvenanceSigner(s.resolved_provenance_dir(engine.data_dir))
        self._encoder: FrameEncoder | None = None
        self.media_dir = s.resolved_media_dir(engine.data_dir)
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

    def _review_encoder(self) -> FrameEncoder | None:
        """The configured CLIP encoder for frame review (loaded on first use), or None."""
        if not self.settings.review_encoder:
            return None
        with self._gen_lock:
            if self._encoder is None:
                self._encoder = ClipFrameEncoder(self.settings.review_encoder)
            return self._encoder

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
            row = int(st.catalogue.rows([remix_of])[0])
            if row < 0:
                msg = f"clip {remix_of} to remix does not exist"
                raise RuleViolation("remix_source", msg)
            original = st.catalogue.captions[row]
            if self.hidden_reason(remix_of) is not None:
                msg = f"clip {remix_of} was withdrawn and cannot be remixed"
                raise RuleViolation("remix_source", msg)
            if self.optouts.matches(f"{original} {' '.join(st.catalogue.hashtags[row] or [])}"):
                msg = f"clip {remix_of} names an opted-out work and cannot be remixed"
                raise RuleViolation("rights_opt_out", msg)
            cameo_ids = list(dict.fromkeys([*cameo_ids, *st.catalogue.cameos[row]]))
            topics = list(st.catalogue.topics[row])
            effective = f"{effective}, remixing: {original}"
        for uid in cameo_ids:
            if uid not in st.profiles.users:
                msg = f"cameo user {uid} does not exist"
                raise RuleViolation("cameo_consent", msg)
            self.consents.check(uid, requested_by)
        # Every cameo here passed the consent check, so a protected person who is one of them
        # may be named.
        self.people.check(effective, consenting_cameos=cameo_ids)
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
        leave every feed at the next page (``pipelines.generation.filters.cameo_consent``)."""
        consent = self.consents.revoke(user_id)
        cancelled = self.queue.cancel(
            self.queue.open_jobs_with_cameo(user_id), f"cameo consent of user {user_id} revoked"
        )
        st = self.engine.state
        with st.lock:
            n_clips = sum(1 for c in st.catalogue.cameos if user_id in c)
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

    def hidden_reason(self, item_id: int) -> str | None:
        """Why a clip is kept out of feeds and its media withdrawn (held for review, taken
        down, revoked cameo, opted-out name), or None when it is not."""
        why = self.reviews.hidden().get(item_id)
        if why is not None:
            return why
        st = self.engine.state
        row = int(st.catalogue.rows([item_id])[0])
        if row < 0:
            return None
        if not self.consents.revoked_users().isdisjoint(st.catalogue.cameos[row]):
            return "a person in it revoked their cameo consent"
        text = f"{st.catalogue.captions[row]} {' '.join(st.catalogue.hashtags[row] or [])}"
        hit = self.optouts.matches(text)
        if hit:
            return f"{hit[0].holder} opted out of {hit[0].name!r}"
        return None

    def is_hidden(self, item_id: int) -> bool:
        """Whether a clip is kept out of feeds (see :meth:`hidden_reason`)."""
        return self.hidden_reason(item_id) is not None

    # -- reports, takedowns, review -------------------------------------------------------------
    def on_events(self, events: pl.DataFrame) -> None:
        """Event listener: a report queues the clip for review; ``report_hide_threshold``
        distinct reporters hide it (counted again after an admin restores it)."""
        if events.height == 0 or "event_type" not in events.columns:
            return
        reported = events.filter(
            (pl.col("event_type") == "report") & pl.col("item_id").is_not_null()
        )
        if reported.height == 0:
            return
        st = self.engine.state
        n_hide = self.settings.report_hide_threshold
        for item_id in reported["item_id"].unique().to_list():
            row = int(st.catalogue.rows([int(item_id)])[0])
            if row < 0:
                continue
            if self.settings.report_scope == "generated" and not st.catalogue.generated[row]:
                continue
            n = int(
                self.engine.store.scalar(
                    "SELECT count(DISTINCT user_id) FROM events WHERE item_id = ? "
                    "AND event_type = 'report'",
                    [int(item_id)],
                )
            )
            entry = self.reviews.get(int(item_id))
            # Reporters counted at an admin's last decision do not count again.
            since = n - (entry.reports_at_decision if entry else 0)
            if entry is not None and entry.hidden:
                self.reviews.set_reports(int(item_id), n)
            elif since >= n_hide:
                self.reviews.put(
                    int(item_id),
                    status="held",
                    source="reports",
                    reason=f"{since} users reported it",
                    reports=n,
                    details={"threshold": n_hide},
                )
                logger.info("clip %d hidden after %d reports", item_id, since)
            elif entry is None or (entry.status == "restored" and since > 0):
                self.reviews.put(
                    int(item_id),
                    status="pending",
                    source="reports",
                    reason=f"{since} user(s) reported it",
                    reports=n,
                )
            else:
                self.reviews.set_reports(int(item_id), n)

    def _frame_hashes(self, item_id: int) -> list[int]:
        """Hashes of a clip's frames: those taken at render time, else of the decoded mp4."""
        prov = self.engine.store.scalar("SELECT provenance FROM clips WHERE item_id = ?", [item_id])
        try:  # an imported clip's provenance may be any text
            stored = json.loads(prov).get("frame_hashes") if prov else None
        except (ValueError, AttributeError):
            stored = None
        if stored:
            return [int(h) for h in stored]
        path = self.files(item_id).video
        if not path.exists():
            return []
        import av
        import numpy as np

        with av.open(str(path)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        return self.frames.hash_frames(np.stack(frames)) if frames else []

    def take_down(
        self,
        item_id: int,
        *,
        source: str,
        reason: str,
        holder_id: str | None = None,
        decided_by: str | None = None,
    ) -> ClipReview:
        """Hide a clip everywhere (feeds, media 410), remember its frames so a re-render is
        held, record the decision, and tell the holder when one asked."""
        if int(self.engine.state.catalogue.rows([item_id])[0]) < 0:
            msg = f"clip {item_id} does not exist"
            raise UnknownReviewError(msg)
        review = self.reviews.put(
            item_id,
            status="taken_down",
            source=source,
            reason=reason,
            holder_id=holder_id,
            decided_by=decided_by or source,
        )
        hashes = self._frame_hashes(item_id)
        if hashes:
            self.frames.block_hashes(item_id, hashes)
        if holder_id:
            self.optouts.notify(holder_id, "takedown", item_id=item_id, detail=reason[:500])
        logger.info("clip %d taken down source=%s", item_id, source)
        return review

    def restore(self, item_id: int, *, decided_by: str, note: str = "") -> ClipReview:
        """An admin's decision to show a clip again (reports count afresh from here)."""
        prev = self.reviews.get(item_id)
        if prev is None:
            msg = f"clip {item_id} is not in the review queue"
            raise UnknownReviewError(msg)
        review = self.reviews.put(
            item_id,
            status="restored",
            source=prev.source,
            reason=note or prev.reason,
            holder_id=prev.holder_id,
            details={**prev.details, "restored_from": prev.status},
            decided_by=decided_by,
        )
        self.frames.unblock_frames(item_id)
        if prev.holder_id and prev.status == "taken_down":
            self.optouts.notify(
                prev.holder_id, "takedown_reversed", item_id=item_id, detail=note[:500]
            )
        return review

    def holder_takedown(self, holder_id: str, item_id: int, reason: str) -> ClipReview:
        """A verified holder's request to take one clip down (acted on at once, recorded, and
        open to an admin's restore)."""
        holder = self.holders.require_verified(holder_id)
        return self.take_down(
            item_id,
            source="holder",
            reason=f"takedown requested by {holder.name}: {reason}".strip(),
            holder_id=holder_id,
            decided_by=f"holder:{holder_id}",
        )

    def verify_holder(self, holder_id: str, *, verified: bool, note: str = "") -> dict[str, Any]:
        """An admin verifies (or rejects) a holder; on verification, the clips its names now
        filter are written to the holder's log."""
        holder = self.holders.decide(holder_id, verified=verified, note=note)
        filtered = self._notify_filtered(holder_id) if verified else 0
        return {"holder": holder.to_dict(), "clips_filtered": filtered}

    def _notify_filtered(self, holder_id: str) -> int:
        mine = {o.optout_id for o in self.optouts.of_holder(holder_id) if o.status == "active"}
        if not mine:
            return 0
        st = self.engine.state
        seen: dict[str, list[Any]] = {}
        n = 0
        for row, caption in enumerate(list(st.catalogue.captions)):
            text = f"{caption} {' '.join(st.catalogue.hashtags[row] or [])}"
            if text not in seen:
                seen[text] = [
                    (o, m)
                    for o, m in self.optouts.find(text, semantic=False)
                    if o.optout_id in mine
                ]
            for o, m in seen[text][:1]:
                self.optouts.notify(
                    holder_id,
                    "clip_filtered",
                    name=o.name,
                    how=m.how,
                    matched=m.fragment[:200],
                    item_id=int(st.catalogue.item_ids[row]),
                )
                n += 1
        return n

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
        s = self.settings
        params = s.render(RenderParams(**job.params))
        rendered = self.generator.render(job.prompt, params)
        for uid in job.cameo_user_ids:
            self.consents.check(uid, job.requested_by)
        self.people.check(job.prompt, consenting_cameos=job.cameo_user_ids)
        self.optouts.check(job.prompt, notify=False)
        # Review what was rendered (before the label, which is ours, not the model's).
        verdict = self.frames.review(rendered.frames)
        frames = watermark(rendered.frames, s.watermark_text) if s.watermark else rendered.frames
        if is_current is not None and not is_current():
            msg = f"job {job.job_id} attempt {job.attempts} was timed out or cancelled"
            raise StaleAttemptError(msg)
        fps = int(params["fps"] or s.fps)
        with self._id_lock:
            item_id = self._next_item_id()
            files = self.files(item_id)
            unsigned = files.video.with_suffix(".unsigned.mp4")
            codec = encode_mp4(
                frames,
                unsigned,
                fps=fps,
                metadata={
                    "title": f"steerfeed clip {item_id}",
                    "comment": "AI-generated by steerfeed; a signed C2PA manifest is inside "
                    "(check it with 'steerfeed verify FILE')",
                },
            )
            prov = rendered.provenance
            # What travels inside the file: no user id (a copy of a file cannot be erased).
            embedded = self.signer.sign(
                unsigned,
                files.video,
                {
                    "item_id": item_id,
                    "request_id": job.job_id,
                    "model": prov.get("model"),
                    "pipeline_class": prov.get("pipeline_class"),
                    "diffusers_version": prov.get("diffusers_version"),
                    "generated_at": prov.get("generated_at"),
                    "seed": prov.get("seed"),
                    "prompt": job.prompt,
                    "watermark": s.watermark,
                },
            )
            unsigned.unlink(missing_ok=True)
            write_poster(frames, files.poster)
            provenance = {
                **prov,
                "job_id": job.job_id,
                "job_kind": job.kind,
                "requested_by": job.requested_by,
                "remix_of": job.remix_of,
                "cameo_user_ids": job.cameo_user_ids,
                "reason": job.reason,
                "codec": codec,
                "fps": fps,
                "watermark": s.watermark,
                "c2pa": {"assertion": ASSERTION, "video_sha256": embedded["video_sha256"]},
                "frame_review": verdict.to_dict(),
                # dHashes of the sampled frames as rendered (before the label and the codec),
                # remembered if the clip is ever taken down.
                "frame_hashes": [str(h) for h in verdict.hashes],
            }
            if verdict.held:
                # Queued before the clip exists in the state, so no feed ever sees it.
                self.reviews.put(
                    item_id,
                    status="held",
                    source="frames",
                    reason=verdict.reason,
                    details=verdict.to_dict(),
                )
            else:  # a row left by a render that crashed before its clip was added
                self.reviews.forget(item_id)
            n = frames.shape[0]
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
            "generated clip item=%d job=%s frames=%d held=%s seconds=%.2f",
            item_id,
            job.job_id,
            n,
            verdict.held,
            time.perf_counter() - t0,
        )
        return item_id

    def status(self, job_id: str) -> dict[str, Any]:
        """A job with, once done, its clip's media URLs and provenance."""
        job = self.queue.get(job_id)
        out = job.to_dict()
        if job.item_id is not None:
            withdrawn = self.hidden_reason(job.item_id)
            out["withdrawn"] = withdrawn
            out["video_url"] = None if withdrawn else self.media_url(job.item_id)
            out["poster_url"] = (
                f"{MEDIA_ROUTE}/{CLIP_FOLDER}/{job.item_id}.png" if out["video_url"] else None
            )
            review = self.reviews.get(job.item_id)
            out["review"] = review.to_dict() if review else None
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
            "review_queue": self.reviews.counts(),
            "review_encoder": self.settings.review_encoder,
        }
