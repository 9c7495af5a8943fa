"""Media: generated clips' mp4s, posters and manifests under ``/media/clips/<id>.<ext>``.

Public (a ``<video>`` tag sends no API key); names are checked against a strict pattern so no
path outside the media folder can be reached. A clip the store no longer holds (erased, or
never added) answers 404 even if a file were left; a clip kept out of feeds (held for review,
taken down, revoked cameo consent, rights-holder opt-out) answers 410 with the reason; a clip
showing people whose consent limits who may see them answers 403 unless the request carries
the signed link a page gave (:mod:`pipelines.generation.media_access`). Manifests are served
without user ids.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.responses import FileResponse, JSONResponse, Response

from api.http.auth import PUBLIC_TAG
from api.http.deps import EngineDep
from api.http.errors import errors
from pipelines.generation.media import public_manifest

router = APIRouter(prefix="/media", tags=["media", PUBLIC_TAG])

_NAME = re.compile(r"^(\d{1,19})\.(mp4|png|json)$")
_TYPES = {"mp4": "video/mp4", "png": "image/png", "json": "application/json"}


@router.get(
    "/clips/{name}",
    responses=errors(
        403,
        404,
        410,
        why={
            403: "the clip shows people who limit who may see them; no valid link",
            404: "no such media",
            410: "withdrawn (cameo consent revoked, rights-holder takedown)",
        },
    ),
)
def get_clip_media(
    name: Annotated[str, Path(max_length=40)],
    engine: EngineDep,
    t: Annotated[
        str | None,
        Query(max_length=80, description="the signed link a page gave (clips showing people)"),
    ] = None,
) -> Response:
    """A generated clip's video (``.mp4``), poster (``.png``) or manifest (``.json``)."""
    m = _NAME.match(name)
    if m is None:
        msg = "media name must be <clip id>.mp4, .png or .json"
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=msg)
    item_id, ext = int(m.group(1)), m.group(2)
    svc = engine.generation
    files = svc.files(item_id)
    path = {"mp4": files.video, "png": files.poster, "json": files.manifest}[ext]
    if not path.exists() or int(engine.state.catalogue.rows([item_id])[0]) < 0:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no media {name}")
    why = svc.hidden_reason(item_id)
    if why is not None:
        raise HTTPException(status.HTTP_410_GONE, detail=f"clip {item_id} was withdrawn: {why}")
    if not engine.media_access.allows(item_id, t):
        msg = (
            f"clip {item_id} shows people who limit who may see them; open it from a feed "
            "page (its media_url carries a signed link)"
        )
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=msg)
    if ext == "json":
        manifest: Any = json.loads(path.read_text())
        return JSONResponse(public_manifest(manifest))
    return FileResponse(path, media_type=_TYPES[ext])
