"""Provenance that travels with the clip: a signed C2PA manifest inside the mp4 (checked with
the real c2pa library and ``steerfeed verify``), tamper detection, and the visible label."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pipelines.generation.provenance import ASSERTION, verify_file
from tests.conftest import TINY_GEN_ENV


@pytest.fixture()
def gen_engine(
    world_dir: Path, tiny_video_model: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """An engine generating with the tiny pipeline."""
    from pipelines.serving.engine import open_engine

    monkeypatch.setenv("STEERFEED_GEN_MODEL", str(tiny_video_model))
    for k, v in TINY_GEN_ENV.items():
        monkeypatch.setenv(k, v)
    eng = open_engine(world_dir)
    yield eng
    eng.close()


def _make(eng: Any, prompt: str, *, seed: int = 11) -> int:
    from pipelines.generation.settings import RenderParams

    svc = eng.generation
    job = svc.submit(
        prompt, requested_by=min(eng.state.profiles.users), params=RenderParams(seed=seed)
    )
    svc.worker.tick(wait=True, timeout_s=300)
    done = svc.queue.get(job.job_id)
    assert done.status == "done", done.error
    assert done.item_id is not None
    return int(done.item_id)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_the_mp4_carries_a_signed_manifest_that_verifies(gen_engine: Any, tmp_path: Path) -> None:
    svc = gen_engine.generation
    item = _make(gen_engine, "a lighthouse on a cliff at dusk")
    video = svc.files(item).video
    report = verify_file(video, trust_anchors=[svc.signer.trust_anchor], require_trusted=True)
    assert report["ok"] and report["trusted"] and report["generated"], report
    rec = report["record"]
    job = svc.queue.list_jobs(limit=1)[0]
    assert rec["model"] == svc.settings.model and rec["request_id"] == job.job_id
    assert rec["item_id"] == item and rec["generated_at"] and rec["watermark"] is True
    assert "requested_by" not in rec and "cameo_user_ids" not in rec  # no user id in the file
    with av.open(str(video)) as c:
        assert "AI-generated" in c.metadata.get("comment", "")
    # Without the anchor the file is intact but its signer is unknown.
    plain = verify_file(video)
    assert plain["ok"] and not plain["trusted"]
    assert not verify_file(video, require_trusted=True)["ok"]


def test_one_changed_byte_in_the_video_or_the_manifest_fails_verification(
    gen_engine: Any, tmp_path: Path
) -> None:
    svc = gen_engine.generation
    item = _make(gen_engine, "a lighthouse on a cliff at dusk")
    video = svc.files(item).video
    anchors = [svc.signer.trust_anchor]
    with av.open(str(video)) as c:
        packet = next(p for p in c.demux(c.streams.video[0]) if p.size > 8)
        assert packet.pos is not None
        pos = int(packet.pos) + packet.size // 2
    in_video = tmp_path / "video.mp4"
    in_video.write_bytes(video.read_bytes())
    _flip(in_video, pos)
    bad = verify_file(in_video, trust_anchors=anchors)
    assert not bad["ok"] and not bad["video_stream_hash_valid"], bad

    in_manifest = tmp_path / "manifest.mp4"
    data = video.read_bytes()
    in_manifest.write_bytes(data)
    at = data.find(str(svc.settings.model).encode()[-12:])  # inside our assertion (CBOR)
    assert at > 0
    _flip(in_manifest, at)
    bad = verify_file(in_manifest, trust_anchors=anchors)
    assert not bad["ok"], bad

    unsigned = tmp_path / "unsigned.mp4"
    from pipelines.generation.media import encode_mp4

    encode_mp4(np.zeros((4, 16, 16, 3), dtype=np.uint8), unsigned, fps=4)
    assert not verify_file(unsigned)["ok"]


def test_steerfeed_verify_exits_zero_on_a_clip_and_one_on_a_tampered_copy(
    gen_engine: Any, world_dir: Path, tmp_path: Path
) -> None:
    from api.cli import app

    svc = gen_engine.generation
    video = svc.files(_make(gen_engine, "paper lanterns over a river")).video
    runner = CliRunner()
    ok = runner.invoke(app, ["verify", str(video), "--data-dir", str(world_dir)])
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.output)
    assert report["trusted"] and report["record"]["video_sha256"]
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(video.read_bytes())
    with av.open(str(copy)) as c:
        packet = next(p for p in c.demux(c.streams.video[0]) if p.size > 8)
        assert packet.pos is not None
        pos = int(packet.pos) + 3
    _flip(copy, pos)
    bad = runner.invoke(app, ["verify", str(copy), "--data-dir", str(world_dir)])
    assert bad.exit_code == 1
    assert json.loads(bad.output)["ok"] is False


def test_the_visible_label_is_drawn_on_the_frames_when_on(
    gen_engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = gen_engine.generation
    labelled = _make(gen_engine, "a red kite over green hills", seed=5)
    monkeypatch.setattr(svc.settings, "watermark", False)
    plain = _make(gen_engine, "a red kite over green hills", seed=5)
    a = np.asarray(Image.open(svc.files(labelled).poster), dtype=np.int16)
    b = np.asarray(Image.open(svc.files(plain).poster), dtype=np.int16)
    band = max(6, a.shape[0] // 8)
    assert np.array_equal(a[:-band], b[:-band])  # same render above the band
    assert np.abs(a[-band:] - b[-band:]).mean() > 20  # the label below
    prov = json.loads(
        gen_engine.store.scalar("SELECT provenance FROM clips WHERE item_id = ?", [plain])
    )
    assert prov["watermark"] is False and prov["c2pa"]["assertion"] == ASSERTION
