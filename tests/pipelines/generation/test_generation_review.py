"""Review of what was rendered: frame review holds a clip before it enters any feed (a tiny
real CLIP encoder, and hashes of taken-down frames); takedowns and restores."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipelines.generation.filters.clip_review import ClipReviewFilter
from pipelines.generation.settings import RenderParams
from ranking.pipeline import FeedQuery
from storage.store import utcnow
from tests.conftest import TINY_GEN_ENV


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained CLIP (real transformers classes) saved with its processor."""
    from pipelines.generation.tiny_model import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture()
def gen_engine(
    world_dir: Path, tiny_video_model: Path, tiny_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """An engine generating with the tiny pipeline and reviewing with the tiny CLIP."""
    from pipelines.serving.engine import open_engine

    monkeypatch.setenv("STEERFEED_GEN_MODEL", str(tiny_video_model))
    monkeypatch.setenv("STEERFEED_GEN_REVIEW_ENCODER", str(tiny_clip))
    for k, v in TINY_GEN_ENV.items():
        monkeypatch.setenv(k, v)
    eng = open_engine(world_dir)
    yield eng
    eng.close()


def _make(eng: Any, prompt: str, *, seed: int) -> int:
    svc = eng.generation
    job = svc.submit(
        prompt, requested_by=min(eng.state.profiles.users), params=RenderParams(seed=seed)
    )
    svc.worker.tick(wait=True, timeout_s=300)
    done = svc.queue.get(job.job_id)
    assert done.status == "done", done.error
    assert done.item_id is not None
    return int(done.item_id)


def _frame_review(eng: Any, item: int) -> dict[str, Any]:
    prov = json.loads(eng.store.scalar("SELECT provenance FROM clips WHERE item_id = ?", [item]))
    review: dict[str, Any] = prov["frame_review"]
    return review


def _removed(eng: Any, item: int) -> bool:
    flt = ClipReviewFilter(eng.generation.reviews)
    q = FeedQuery(user_id=min(eng.state.profiles.users), limit=10, now=utcnow(), session_id="s")
    return flt.apply(q, pl.DataFrame({"item_id": [item]})).removed.height == 1


def test_frames_close_to_a_concept_are_held_before_any_feed(
    gen_engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mechanism with a real (tiny, untrained) encoder: the same render is held exactly
    when its measured frame-to-concept similarity reaches the threshold."""
    svc = gen_engine.generation
    first = _make(gen_engine, "a windmill in a tulip field", seed=21)
    seen = _frame_review(gen_engine, first)
    assert seen["held"] is False and seen["encoder"] and seen["concept"]
    sim = float(seen["similarity"])
    assert svc.reviews.get(first) is None and not _removed(gen_engine, first)

    monkeypatch.setattr(svc.frames, "threshold", sim - 1e-3)
    held = _make(gen_engine, "a windmill in a tulip field", seed=21)
    entry = svc.reviews.get(held)
    assert entry is not None and entry.status == "held" and entry.source == "frames"
    assert seen["concept"] in entry.reason
    assert _removed(gen_engine, held) and svc.is_hidden(held)
    page_ids = {
        i.item_id for i in gen_engine.feed(min(gen_engine.state.profiles.users), limit=50).items
    }
    assert held not in page_ids
    status = svc.status(svc.queue.list_jobs(limit=1)[0].job_id)
    assert status["video_url"] is None and "held for review" in status["withdrawn"]

    monkeypatch.setattr(svc.frames, "threshold", sim + 1e-3)
    passed = _make(gen_engine, "a windmill in a tulip field", seed=21)
    assert svc.reviews.get(passed) is None


def test_a_rerender_of_a_taken_down_clip_is_held(
    gen_engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = gen_engine.generation
    monkeypatch.setattr(svc.frames, "threshold", 1.0)  # concepts aside: the hash check alone
    first = _make(gen_engine, "a paper boat on a puddle", seed=8)
    other = _make(gen_engine, "a paper boat on a puddle", seed=9)
    svc.take_down(first, source="admin", reason="reported as abusive", decided_by="test")
    assert svc.is_hidden(first) and not svc.is_hidden(other)
    again = _make(gen_engine, "a paper boat on a puddle", seed=8)
    entry = svc.reviews.get(again)
    assert entry is not None and entry.status == "held"
    assert f"clip {first}" in entry.reason
    different = _make(gen_engine, "a paper boat on a puddle", seed=77)
    assert svc.reviews.get(different) is None
    # Restoring the original forgets its frames: the same render passes again.
    svc.restore(first, decided_by="test", note="mistake")
    assert not svc.is_hidden(first)
    assert svc.reviews.get(_make(gen_engine, "a paper boat on a puddle", seed=8)) is None
