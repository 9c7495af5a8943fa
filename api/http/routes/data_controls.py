"""Data controls: the signals a person lets the feed use, and their city.

``GET /v1/users/{user_id}/data-controls`` shows each signal (on or off, by their choice or by
default, and what it is used for) and the city; ``PUT`` changes some of them. The same state is
shown in "what we think you like" (``GET /v1/users/{user_id}/interests``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from api.http.deps import EngineDep, PrincipalDep, parent_links
from api.http.errors import errors

router = APIRouter(prefix="/v1/users", tags=["data controls"])

UserId = Annotated[int, Path(ge=0, le=2**62)]


class DataControlsIn(BaseModel):
    """Data controls to change; fields left out keep their value. ``true``/``false`` turns a
    signal on or off, ``null`` puts it back to the default (teens: location off). ``city`` is
    a city name (never coordinates or an address), ``null`` forgets it."""

    # Strict: a switch is true, false or null ("yes", 1 are refused, not guessed).
    model_config = ConfigDict(extra="forbid", strict=True)

    location: bool | None = None
    watch_time: bool | None = None
    friends_activity: bool | None = None
    interaction_history: bool | None = None
    satisfaction_model: bool | None = None
    city: str | None = Field(default=None, max_length=100)


def _access(engine: Any, principal: Any, user_id: int) -> None:
    principal.require_user_access(user_id, parent_of=parent_links(engine, principal))
    engine.require_user(user_id)


@router.get("/{user_id}/data-controls", responses=errors(404, why={404: "unknown user"}))
def get_data_controls(
    user_id: UserId, engine: EngineDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Each signal, on or off, who set it and what it is used for; the city."""
    _access(engine, principal, user_id)
    return engine.data_controls.describe(user_id)


@router.put(
    "/{user_id}/data-controls",
    responses=errors(
        404, 422, why={422: "an unknown control, a value not true/false/null, or a bad city"}
    ),
)
def put_data_controls(
    user_id: UserId, body: DataControlsIn, engine: EngineDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Turn signals on or off, or set the city; applies to the next page."""
    _access(engine, principal, user_id)
    engine.data_controls.update(user_id, body.model_dump(exclude_unset=True))
    return engine.data_controls.describe(user_id)
