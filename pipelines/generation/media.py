"""Encoding clips: an H.264 mp4 (PyAV, libx264; mpeg4 when libx264 is missing), a PNG poster
frame and a JSON sidecar manifest, all under the media folder; and the visible label drawn on
generated frames."""

from __future__ import annotations

import json
import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from storage.erasure import is_user_column

logger = logging.getLogger(__name__)


def to_uint8_frames(frames: Any) -> np.ndarray:
    """Normalise a pipeline's frames to a ``(n, height, width, 3)`` uint8 array.

    Accepts numpy arrays (floats in [0, 1] or uint8, with or without a batch axis), torch
    tensors shaped like those, and lists of PIL images (or of lists of them).
    """
    if isinstance(frames, list | tuple) and frames and isinstance(frames[0], list | tuple):
        frames = frames[0]
    if isinstance(frames, list | tuple):
        arr = np.stack(
            [np.asarray(f.convert("RGB") if hasattr(f, "convert") else f) for f in frames]
        )
    else:
        if hasattr(frames, "detach"):
            frames = frames.detach().float().cpu().numpy()
        arr = np.asarray(frames)
    if arr.ndim == 5:
        arr = arr[0]
    if arr.ndim != 4:
        msg = f"expected frames shaped (n, h, w, c), got {arr.shape}"
        raise ValueError(msg)
    if arr.shape[-1] not in (1, 3, 4) and arr.shape[1] in (1, 3, 4):
        arr = np.moveaxis(arr, 1, -1)  # (n, c, h, w) -> (n, h, w, c)
    if arr.dtype != np.uint8:
        arr = (np.clip(np.nan_to_num(arr.astype(np.float32)), 0.0, 1.0) * 255.0).round()
        arr = arr.astype(np.uint8)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr[..., :3])


def watermark(frames: np.ndarray, text: str) -> np.ndarray:
    """Draw ``text`` on a dark band along the bottom of every frame (a copy is returned).

    The band is an eighth of the height (at least 6 pixels); the text is scaled to fit it and
    shortened to "AI" when the frame is too small for the whole label to be read.
    """
    _, h, w, _ = frames.shape
    band = max(6, h // 8)
    size = max(6, band - 2)
    try:
        font: Any = ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    label = text
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    # Small type is unreadable: below 10 px, or when it does not fit, the label is "AI".
    if size < 10 or probe.textlength(label, font=font) > w - 2:
        label = "AI"
    out = frames.copy()
    # The band darkens what is under it by half, so the label reads on any picture.
    out[:, h - band :, :, :] = out[:, h - band :, :, :] // 2
    stamp = Image.new("L", (w, band), 0)
    ImageDraw.Draw(stamp).text((1, (band - size) // 2 - 1), label, fill=255, font=font)
    mask = np.asarray(stamp) > 96
    region = out[:, h - band :, :, :]
    region[:, mask] = 255
    return out


def encode_mp4(
    frames: np.ndarray, path: Path, *, fps: int, metadata: dict[str, str] | None = None
) -> str:
    """Write frames to an mp4 file; return the codec used.

    Odd widths or heights are padded by one pixel (yuv420p needs even sizes). ``metadata``
    becomes container tags (``comment``, ``title``...), which players and ffprobe show.
    """
    _, h, w, _ = frames.shape
    ph, pw = h + (h % 2), w + (w % 2)
    if (ph, pw) != (h, w):
        frames = np.pad(frames, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        if metadata:
            container.metadata.update(metadata)
        stream: Any = container.add_stream(codec, rate=Fraction(fps, 1))
        stream.width = pw
        stream.height = ph
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "23", "preset": "veryfast"}
        for img in frames:
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return codec


def count_frames(path: Path) -> int:
    """Decode an mp4 and count its video frames (used to check what was written)."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def write_poster(frames: np.ndarray, path: Path) -> None:
    """Write the middle frame as a PNG poster."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frames[len(frames) // 2]).save(path, format="PNG")


def public_manifest(manifest: Any) -> Any:
    """The manifest without user ids (``requested_by``, ``cameo_user_ids``, any user-named key
    at any depth): it is served publicly, and who asked for or appears in a clip is not public.
    The store keeps them in ``clips.provenance`` for the API."""
    if isinstance(manifest, dict):
        return {k: public_manifest(v) for k, v in manifest.items() if not is_user_column(str(k))}
    if isinstance(manifest, list):
        return [public_manifest(v) for v in manifest]
    return manifest


def write_manifest(manifest: dict[str, Any], path: Path) -> None:
    """Write the public sidecar manifest (provenance and files, no user ids) as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(public_manifest(manifest), indent=2, sort_keys=True, default=str))
    tmp.replace(path)
