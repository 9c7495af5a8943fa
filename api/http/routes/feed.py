"""GET /v1/feed: a ranked page for a user."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.http.deps import EngineDep, PrincipalDep, parent_links
from api.http.errors import errors
from api.http.json_response import OrjsonResponse
from pipelines.serving.page import FeedPage

router = APIRouter(prefix="/v1", tags=["feed"])


@router.get(
    "/feed",
    # The schema documents FeedPage; the body is the engine's page written by orjson, not
    # validated a second time on the way out (api/http/json_response.py).
    response_model=FeedPage,
    response_class=OrjsonResponse,
    responses=errors(
        400,
        404,
        422,
        why={
            400: "a tampered or malformed cursor",
            404: "unknown user",
            422: "the city is not a city name (coordinates, digits) or no clip comes from it",
        },
    ),
)
def get_feed(
    engine: EngineDep,
    principal: PrincipalDep,
    user_id: Annotated[int, Query(ge=0, le=2**62, description="whose feed")],
    limit: Annotated[int | None, Query(ge=1, le=100, description="clips per page")] = None,
    cursor: Annotated[
        str | None, Query(max_length=65536, description="next_cursor of the previous page")
    ] = None,
    city: Annotated[
        str | None,
        Query(
            max_length=100,
            description="the city the person is in (a city name, never coordinates); used "
            "only while they allow location in their data controls",
        ),
    ] = None,
) -> OrjsonResponse:
    """Return the next ranked page; each item says why it is there."""
    principal.require_user_access(user_id, parent_of=parent_links(engine, principal))
    # The engine's page is the response: built once, serialised as it is.
    return OrjsonResponse(engine.feed(user_id, limit=limit, cursor=cursor, city=city))
