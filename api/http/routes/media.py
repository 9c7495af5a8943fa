"""Media: generated clips' mp4s, posters and manifests under ``/media/clips/<id>.<ext>``.

Public (a ``<video>`` tag sends no API key); names are checked against a strict pattern so no
path outside the media folder can be reached, and clips kept out of feeds (held for review,
taken down, revoked cameo consent, rights-holder opt-out) answer 410 with the reason.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from fastapi.responses import FileResponse

from api.http.auth import PUBLIC_TAG
from api.http.deps import EngineDep

router = APIRouter(prefix="/media", tags=["media", PUBLIC_TAG])

_NAME = re.compile(r"^(\d{1,19})\.(mp4|png|json)$")
_TYPES = {"mp4": "video/mp4", "png": "image/png", "json": "application/json"}


@router.get("/clips/{name}")
def get_clip_media(name: Annotated[str, Path(max_length=40)], engine: EngineDep) -> FileResponse:
    """A generated clip's video (``.mp4``), poster (``.png``) or manifest (``.json``)."""
    m = _NAME.match(name)
    if m is None:
        msg = "media name must be <clip id>.mp4, .png or .json"
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=msg)
    item_id, ext = int(m.group(1)), m.group(2)
    svc = engine.generation
    files = svc.files(item_id)
    path = {"mp4": files.video, "png": files.poster, "json": files.manifest}[ext]
    if not path.exists():
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no media {name}")
    why = svc.hidden_reason(item_id)
    if why is not None:
        raise HTTPException(status.HTTP_410_GONE, detail=f"clip {item_id} was withdrawn: {why}")
    return FileResponse(path, media_type=_TYPES[ext])
