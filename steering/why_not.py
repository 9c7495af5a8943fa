""" "Why not this clip?": which rule or stage kept a clip off the user's next page."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import polars as pl

from ranking.context import RequestContext
from ranking.pipeline import FeedQuery, RankingPipeline
from ranking.state import FeedState
from storage.errors import UnknownEntityError

FILTER_WORDS = {
    "unknown_clip": "the clip is not in the catalogue",
    "already_seen": "you have already seen it",
    "blocked_author": "you blocked or muted its creator",
    "safety": "it is not allowed for your account (safety or maturity)",
    "mood_exclusions": "a mood or a standing rule of yours excludes it",
}


def why_not(
    pipeline: RankingPipeline, state: FeedState, user_id: int, clip_id: int, *, limit: int = 20
) -> dict[str, Any]:
    """Explain why a clip is (or is not) on the user's next page of ``pipeline``.

    The page is built as a dry run: no impression is logged and no page is counted (a lookup
    does not move the user's page or time caps).

    Returns a dict with ``clip_id``, ``status`` (``on_page``, ``filtered``, ``not_retrieved``
    or ``ranked_below``), ``stage``, ``filter``, ``rule`` and ``message``.

    Raises
    ------
    UnknownEntityError
        Unknown clip.
    """
    if clip_id not in state.catalogue.row_of:
        msg = f"unknown clip {clip_id}"
        raise UnknownEntityError(msg)
    now = datetime.now(UTC).replace(tzinfo=None)
    query = FeedQuery(user_id=user_id, limit=limit, now=now, session_id="why-not")
    result = pipeline.run(query, dry_run=True)
    out: dict[str, Any] = {"clip_id": clip_id, "user_id": user_id, "rule": None, "filter": None}
    page_ids = result.page["item_id"].to_list()
    if clip_id in page_ids:
        pos = page_ids.index(clip_id)
        return {
            **out,
            "status": "on_page",
            "stage": "selector",
            "position": pos,
            "message": f"it is on your next page at position {pos + 1}",
        }
    ctx = result.query.context
    removed_by = result.removed.get(clip_id)
    # Every filter that would remove the clip on its own, so the answer does not hinge on which
    # one ran first (an impression committed a moment ago turns "never show" into "seen").
    blocking = _blocking_filters(pipeline, query, ctx, clip_id)
    if removed_by is None and blocking:
        removed_by = blocking[0]["filter"]
    if removed_by is not None:
        rule = ctx.steering_removed.get(clip_id)
        if rule is None:
            rule = next((b["rule"] for b in blocking if b["filter"] == removed_by), None)
        words = FILTER_WORDS.get(removed_by, f"the {removed_by} filter removed it")
        if rule:
            words = f"{words} ({rule})"
        return {
            **out,
            "status": "filtered",
            "stage": "filter",
            "filter": removed_by,
            "rule": rule,
            "message": words,
            "all_filters": blocking,
        }
    if result.page.height < limit:
        return {
            **out,
            "status": "not_retrieved",
            "stage": "sources",
            "message": "no candidate source found it for you (it is not close to your "
            "tastes, your mood, people you follow or what is trending)",
        }
    return {
        **out,
        "status": "not_retrieved",
        "stage": "sources",
        "message": "no candidate source picked it, or it ranked below the clips on your page",
    }


def _blocking_filters(
    pipeline: RankingPipeline, query: FeedQuery, ctx: RequestContext, clip_id: int
) -> list[dict[str, Any]]:
    """Push the clip alone through the hydrators, then through each filter separately.

    Returns ``{"filter", "rule"}`` for every filter that removes it, in pipeline order.
    """
    q2 = replace(query, context=ctx.copy())
    q2.context.steering_removed = {}
    cand = pl.DataFrame(
        {"item_id": [clip_id], "source_score": [0.0], "source": ["why_not"]},
        schema={"item_id": pl.Int64, "source_score": pl.Float64, "source": pl.String},
    )
    for h in pipeline.hydrators:
        cand = h.hydrate(q2, cand)
    out: list[dict[str, Any]] = []
    for f in pipeline.filters:
        if f.apply(q2, cand).removed.height:
            rule = q2.context.steering_removed.get(clip_id) if f.name == "mood_exclusions" else None
            out.append({"filter": f.name, "rule": rule})
    return out
