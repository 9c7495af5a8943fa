"""Endpoints that add clips, users, follows and blocks."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
from fastapi import APIRouter, HTTPException, status

from api.http.deps import EngineDep, PrincipalDep
from api.http.errors import errors
from api.http.schemas import (
    TEEN_BANDS,
    BlockIn,
    ClipBatchIn,
    CountOut,
    FollowIn,
    UserBatchIn,
    to_naive_utc,
)
from storage.errors import DuplicateEntityError

router = APIRouter(prefix="/v1", tags=["catalogue"])


@router.post(
    "/clips",
    response_model=CountOut,
    status_code=201,
    responses=errors(
        409, 422, why={409: "a clip with that item_id exists", 422: "item_id repeats"}
    ),
)
def post_clips(batch: ClipBatchIn, engine: EngineDep, principal: PrincipalDep) -> CountOut:
    """Add clips; their captions are embedded and indexed before this returns."""
    principal.require("service", "admin")
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = []
    for c in batch.clips:
        d = c.model_dump()
        d["created_at"] = to_naive_utc(c.created_at) if c.created_at else now
        rows.append(d)
    df = pl.DataFrame(
        rows,
        schema_overrides={
            "remix_of": pl.Int64,
            "cameo_user_ids": pl.List(pl.Int64),
            "topics": pl.List(pl.String),
            "hashtags": pl.List(pl.String),
            "created_at": pl.Datetime("us"),
            "maturity": pl.Int16,
            "city": pl.String,
        },
    )
    ids = df["item_id"].to_list()
    if len(set(ids)) != len(ids):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "item_id repeats in the batch")
    taken = [i for i in ids if i in engine.state.catalogue.row_of]
    if taken:
        raise HTTPException(status.HTTP_409_CONFLICT, f"clips already exist: {taken[:10]}")
    try:
        n = engine.add_clips(df)
    except DuplicateEntityError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return CountOut(written=n)


@router.post(
    "/users",
    response_model=CountOut,
    status_code=201,
    responses=errors(409, why={409: "a user exists already, or repeats in the batch"}),
)
def post_users(batch: UserBatchIn, engine: EngineDep, principal: PrincipalDep) -> CountOut:
    """Add users."""
    principal.require("service", "admin")
    import json

    rows = [
        {
            "user_id": u.user_id,
            "age_band": u.age_band,
            "is_teen": u.age_band in TEEN_BANDS,
            "timezone": u.timezone,
            "settings": json.dumps(u.settings),
        }
        for u in batch.users
    ]
    ids = [r["user_id"] for r in rows]
    taken = [i for i in ids if i in engine.state.profiles.users]
    if taken or len(set(ids)) != len(ids):
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"users already exist or repeat: {(taken or ids)[:10]}"
        )
    try:
        n = engine.add_users(pl.DataFrame(rows))
    except DuplicateEntityError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return CountOut(written=n)


@router.post(
    "/follows",
    response_model=CountOut,
    status_code=201,
    responses=errors(404, why={404: "unknown follower or followee"}),
)
def post_follow(body: FollowIn, engine: EngineDep, principal: PrincipalDep) -> CountOut:
    """Add a follow edge (the follower must be the caller for ``user`` keys)."""
    principal.require_user_access(body.follower_id)
    for u in (body.follower_id, body.followee_id):
        engine.require_user(u)
    n = engine.add_follows(pl.DataFrame([body.model_dump()]))
    return CountOut(written=n)


@router.delete("/follows", response_model=CountOut)
def delete_follow(body: FollowIn, engine: EngineDep, principal: PrincipalDep) -> CountOut:
    """Remove a follow edge."""
    principal.require_user_access(body.follower_id)
    engine.store.remove_follow(body.follower_id, body.followee_id)
    engine.state.graph.remove_follow(body.follower_id, body.followee_id)
    return CountOut(written=1)


@router.post(
    "/blocks",
    response_model=CountOut,
    status_code=201,
    responses=errors(404, why={404: "unknown user"}),
)
def post_block(body: BlockIn, engine: EngineDep, principal: PrincipalDep) -> CountOut:
    """Block or mute a user: their clips never reach the blocker's feed."""
    principal.require_user_access(body.user_id)
    engine.require_user(body.user_id)
    n = engine.add_blocks(pl.DataFrame([body.model_dump()]))
    return CountOut(written=n)
