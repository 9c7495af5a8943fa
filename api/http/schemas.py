"""Request and response models (pydantic): every input is validated here."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ranking.signals import normalise_city
from storage.store import EventType

AgeBand = Literal["13-15", "16-17", "18-24", "25-34", "35-44", "45-54", "55+"]
TEEN_BANDS = {"13-15", "16-17"}
MAX_EVENT_BATCH = 1000
MAX_ID = 2**62
#: A user's free-form settings: at most this many top-level keys and this many bytes of JSON.
MAX_SETTINGS_KEYS = 64
MAX_SETTINGS_BYTES = 16 * 1024
#: Lists whose overflow is answered 413 (too large) rather than 422: ``(location, limit)``.
TOO_LARGE_LISTS: dict[tuple[str, ...], int] = {("body", "events"): MAX_EVENT_BATCH}


def to_naive_utc(ts: datetime) -> datetime:
    """Naive UTC datetime (the store's form); naive inputs are taken as UTC."""
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts


class Strict(BaseModel):
    """Base: unknown fields are errors that name the field."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class EventIn(Strict):
    """One client event. ``event_id`` makes retries idempotent."""

    event_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")
    user_id: int = Field(ge=0, le=MAX_ID)
    event_type: EventType
    item_id: int | None = Field(default=None, ge=0, le=MAX_ID)
    target_user_id: int | None = Field(default=None, ge=0, le=MAX_ID)
    ts: datetime | None = None
    session_id: str | None = Field(default=None, max_length=128)
    request_id: str | None = Field(default=None, max_length=128)
    position: int | None = Field(default=None, ge=0, le=10_000)
    watch_s: float | None = Field(default=None, ge=0, le=86_400)
    watch_frac: float | None = Field(default=None, ge=0, le=50)
    weight: float | None = Field(default=None, ge=0, le=1e9)

    @model_validator(mode="after")
    def _needs(self) -> EventIn:
        if self.event_type == "follow":
            if self.target_user_id is None:
                msg = "a follow event needs target_user_id (the followed user)"
                raise ValueError(msg)
        elif self.item_id is None:
            msg = f"a {self.event_type} event needs item_id"
            raise ValueError(msg)
        if self.event_type == "view" and self.watch_s is None and self.watch_frac is None:
            msg = "a view event needs watch_s or watch_frac"
            raise ValueError(msg)
        return self


class EventBatchIn(Strict):
    """A batch of events (at most 1,000; larger batches get 413)."""

    events: list[EventIn] = Field(max_length=MAX_EVENT_BATCH)


class EventBatchOut(BaseModel):
    """What was committed: new events and duplicates of earlier ones."""

    accepted: int
    duplicates: int


class ClipIn(Strict):
    """A clip to add to the catalogue."""

    item_id: int = Field(ge=0, le=MAX_ID)
    author_id: int = Field(ge=0, le=MAX_ID)
    caption: str = Field(min_length=1, max_length=2000)
    topics: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=20)
    hashtags: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=50
    )
    duration_s: float = Field(default=15.0, gt=0, le=3600)
    created_at: datetime | None = None
    safety_label: Literal["safe", "borderline", "violative"] = "safe"
    maturity: int = Field(default=0, ge=0, le=2)
    is_generated: bool = False
    remix_of: int | None = Field(default=None, ge=0, le=MAX_ID)
    cameo_user_ids: list[Annotated[int, Field(ge=0, le=MAX_ID)]] = Field(
        default_factory=list, max_length=20
    )
    city: str | None = Field(
        default=None,
        max_length=100,
        description="the city the clip was made in (a city name, never coordinates)",
    )

    @field_validator("city")
    @classmethod
    def _city(cls, v: str | None) -> str | None:
        # Never finer than a city: coordinates, postcodes and addresses are refused (422).
        return None if v is None else normalise_city(v)

    @field_validator("topics", "hashtags")
    @classmethod
    def _short(cls, v: list[str]) -> list[str]:
        for s in v:
            if not 0 < len(s) <= 64:
                msg = "each topic/hashtag must be 1-64 characters"
                raise ValueError(msg)
        return v


class ClipBatchIn(Strict):
    """Clips to add (at most 1,000)."""

    clips: list[ClipIn] = Field(min_length=1, max_length=1000)


class UserIn(Strict):
    """A user to add."""

    user_id: int = Field(ge=0, le=MAX_ID)
    age_band: AgeBand = "25-34"
    timezone: str = Field(default="UTC", max_length=64)
    settings: dict[Annotated[str, Field(max_length=64)], Any] = Field(
        default_factory=dict,
        max_length=MAX_SETTINGS_KEYS,
        description=f"free-form settings, at most {MAX_SETTINGS_BYTES} bytes as JSON",
    )

    @field_validator("settings")
    @classmethod
    def _small_settings(cls, v: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(v, separators=(",", ":")))
        if size > MAX_SETTINGS_BYTES:
            msg = f"settings are {size} bytes as JSON; at most {MAX_SETTINGS_BYTES}"
            raise ValueError(msg)
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            msg = f"unknown timezone {v!r}; use an IANA name such as 'Europe/Paris'"
            raise ValueError(msg) from exc
        return v


class UserBatchIn(Strict):
    """Users to add (at most 1,000)."""

    users: list[UserIn] = Field(min_length=1, max_length=1000)


class FollowIn(Strict):
    """A directed follow; two follows in opposite directions make friends."""

    follower_id: int = Field(ge=0, le=MAX_ID)
    followee_id: int = Field(ge=0, le=MAX_ID)

    @model_validator(mode="after")
    def _not_self(self) -> FollowIn:
        if self.follower_id == self.followee_id:
            msg = "a user cannot follow themselves"
            raise ValueError(msg)
        return self


class BlockIn(Strict):
    """A block or mute of another user (their clips disappear from the feed)."""

    user_id: int = Field(ge=0, le=MAX_ID)
    target_id: int = Field(ge=0, le=MAX_ID)
    kind: Literal["block", "mute"] = "block"


class CountOut(BaseModel):
    """How many rows were written."""

    written: int


class ErrorOut(BaseModel):
    """An error: what was wrong and how to fix it (see docs/api.md for every status)."""

    detail: str | dict[str, Any] | list[Any] = Field(
        description="what to fix: a sentence; a generation refusal's {reason, message}; the "
        "list of problems of an invalid request (422)"
    )
    message: str | None = Field(
        default=None, description="422 from request validation: the problems in one line"
    )
