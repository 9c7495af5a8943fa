"""POST /v1/events: batches of client events, committed before they are acknowledged."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
from fastapi import APIRouter, HTTPException, status

from api.http.deps import EngineDep, PrincipalDep
from api.http.errors import errors
from api.http.schemas import MAX_EVENT_BATCH, EventBatchIn, EventBatchOut, to_naive_utc

router = APIRouter(prefix="/v1", tags=["events"])


@router.post(
    "/events",
    response_model=EventBatchOut,
    responses=errors(
        404, 413, why={404: "unknown user or clip", 413: "more than 1,000 events in the batch"}
    ),
)
def post_events(batch: EventBatchIn, engine: EngineDep, principal: PrincipalDep) -> EventBatchOut:
    """Commit a batch idempotently; the response comes after the commit.

    An ``event_id`` is unique per user: a repeat of one of this user's stored ids (a retry) is
    counted in ``duplicates``; another user's event with the same id is a different event.
    """
    principal.require("service", "user", "admin")
    n = len(batch.events)
    if n > MAX_EVENT_BATCH:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"batch has {n} events; send at most {MAX_EVENT_BATCH} per request",
        )
    if n == 0:
        return EventBatchOut(accepted=0, duplicates=0)
    users = {e.user_id for e in batch.events}
    for u in users:
        principal.require_user_access(u)
    unknown = sorted(u for u in users if u not in engine.state.profiles.users)
    if unknown:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"unknown user_id(s) {unknown[:10]}; create users before sending their events",
        )
    items = {e.item_id for e in batch.events if e.item_id is not None}
    missing = sorted(i for i in items if i not in engine.state.catalogue.row_of)
    if missing:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"unknown item_id(s) {missing[:10]}; add clips before sending their events",
        )
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = []
    for e in batch.events:
        d = e.model_dump()
        d["ts"] = to_naive_utc(e.ts) if e.ts else now
        d["received_at"] = now
        rows.append(d)
    df = pl.DataFrame(
        rows,
        schema_overrides={
            "ts": pl.Datetime("us"),
            "received_at": pl.Datetime("us"),
            "item_id": pl.Int64,
            "target_user_id": pl.Int64,
            "position": pl.Int32,
            "watch_s": pl.Float64,
            "watch_frac": pl.Float64,
            "weight": pl.Float64,
        },
    )
    accepted = engine.ingest_events(df)
    return EventBatchOut(accepted=accepted, duplicates=n - accepted)
