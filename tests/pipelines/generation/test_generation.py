"""The clip generator end to end on a tiny real diffusers pipeline (CPU), and its queue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pipelines.generation.media import count_frames
from pipelines.generation.settings import GenerationSettings
from pipelines.serving.jobs import JobContext, run_job
from tests.conftest import TINY_GEN_ENV


@pytest.fixture()
def gen_engine(
    world_dir: Path, tiny_video_model: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """An engine whose generator loads the tiny pipeline by path (like a real model)."""
    from pipelines.serving.engine import open_engine

    monkeypatch.setenv("STEERFEED_GEN_MODEL", str(tiny_video_model))
    for k, v in TINY_GEN_ENV.items():
        monkeypatch.setenv(k, v)
    eng = open_engine(world_dir)
    yield eng
    eng.close()


def _feed_items(eng: Any, user_id: int, pages: int = 4) -> list[Any]:
    items: list[Any] = []
    cursor = None
    for _ in range(pages):
        page = eng.feed(user_id, limit=50, cursor=cursor)
        items.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    return items


def test_generated_clip_is_an_8_frame_mp4_with_provenance_and_reaches_the_feed(
    gen_engine: Any,
) -> None:
    eng = gen_engine
    svc = eng.generation
    uid = min(eng.state.profiles.users)
    job = svc.submit("a calm mountain lake at dawn with mist", requested_by=uid)
    assert job.status == "queued"

    report = run_job("generate", JobContext(eng, {"wait": True, "timeout_s": 300}))
    assert report.ok, report.message
    done = svc.queue.get(job.job_id)
    assert done.status == "done", done.error
    assert done.item_id is not None
    item_id = done.item_id

    files = svc.files(item_id)
    assert count_frames(files.video) == 8
    with Image.open(files.poster) as poster:
        assert poster.size == (32, 32)
    manifest = json.loads(files.manifest.read_text())
    prov = json.loads(eng.store.scalar("SELECT provenance FROM clips WHERE item_id = ?", [item_id]))
    for p in (prov, manifest["provenance"]):
        assert p["is_generated"] is True
        assert p["model"] == svc.settings.model
        assert p["prompt"] == "a calm mountain lake at dawn with mist"
        assert p["params"]["num_frames"] == 8 and p["params"]["steps"] == 2
        assert isinstance(p["seed"], int)
        assert p["generated_at"]
    assert manifest["files"]["video_url"] == f"/media/clips/{item_id}.mp4"

    row = int(eng.state.catalogue.rows([item_id])[0])
    assert eng.state.catalogue.generated[row] and eng.state.catalogue.has_vector[row]
    assert eng.state.catalogue.captions[row] == "a calm mountain lake at dawn with mist"

    # A mood close to the prompt: the clip comes in through "made for your mood", labelled.

    eng.steering.moods.create(uid, "calm mountain lake at dawn")
    hits = [i for i in _feed_items(eng, uid) if i.item_id == item_id]
    assert hits, "the generated clip never reached the user's feed"
    item = hits[0]
    assert item.is_generated and item.source == "generated"
    assert item.reason.startswith("Made for your mood")
    assert item.explanation.made_for_your_mood is True
    assert item.explanation.media_url == f"/media/clips/{item_id}.mp4"


def test_missing_model_fails_after_retries_and_the_feed_still_serves(
    world_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.serving.engine import open_engine

    monkeypatch.delenv("STEERFEED_GEN_MODEL", raising=False)
    monkeypatch.setenv("STEERFEED_GEN_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("STEERFEED_GEN_RETRY_BACKOFF_S", "0")
    eng = open_engine(world_dir)
    try:
        svc = eng.generation
        uid = min(eng.state.profiles.users)
        job = svc.submit("a quiet beach with gentle waves", requested_by=uid)
        svc.worker.tick(wait=True, timeout_s=60)
        failed = svc.queue.get(job.job_id)
        assert failed.status == "failed"
        assert failed.attempts == 2
        assert "STEERFEED_GEN_MODEL" in (failed.error or "")
        assert eng.feed(uid, limit=10).items
        assert eng.health()["generation"]["queue"] == {"failed": 1}
    finally:
        eng.close()


def test_an_attempt_past_its_timeout_is_failed_and_its_clip_discarded(
    world_dir: Path, tiny_video_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.serving.engine import open_engine

    monkeypatch.setenv("STEERFEED_GEN_MODEL", str(tiny_video_model))
    for k, v in TINY_GEN_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("STEERFEED_GEN_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("STEERFEED_GEN_TIMEOUT_S", "0.05")
    eng = open_engine(world_dir)
    try:
        svc = eng.generation
        n_clips = len(eng.state.catalogue.item_ids)
        job = svc.submit("a red kite over green hills", requested_by=min(eng.state.profiles.users))
        svc.worker.tick(wait=True, timeout_s=120)
        got = svc.queue.get(job.job_id)
        assert got.status == "failed"
        assert "timed out" in (got.error or "")
        assert len(eng.state.catalogue.item_ids) == n_clips
    finally:
        eng.close()


def test_render_params_merge_over_settings_defaults() -> None:
    from pipelines.generation.settings import RenderParams

    s = GenerationSettings(num_frames=16, steps=25, seed=None)
    merged = s.render(RenderParams(num_frames=8, seed=7))
    assert merged["num_frames"] == 8 and merged["steps"] == 25 and merged["seed"] == 7
    with pytest.raises(ValueError, match="multiple of 8"):
        RenderParams(height=30)
    with pytest.raises(ValueError, match="extra"):
        GenerationSettings(not_an_option=1)  # type: ignore[call-arg]
