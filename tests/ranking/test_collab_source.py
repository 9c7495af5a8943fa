"""The collab source's unfiltered search + catalogue mask returns what the filtered search does."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from pipelines.serving.jobs import JobContext, run_job
from ranking.pipeline import FeedQuery
from ranking.sources.collab import CollabSource


def _queries(engine: Any) -> list[FeedQuery]:
    """Real page queries (hydrated contexts) of every user with a collab vector."""
    src = next(s for s in engine.products["home"].sources if s.name == "collab")
    caught: list[FeedQuery] = []
    orig = src.fetch

    def capture(query: FeedQuery) -> Any:
        caught.append(query)
        return orig(query)

    src.fetch = capture
    try:
        for uid in sorted(engine.state.profiles.users)[:60]:
            engine.feed(int(uid), limit=10)
            engine.feed(int(uid), limit=10)  # a second page: seen and served ids to exclude
    finally:
        del src.fetch
    return [q for q in caught if engine.collab.users.get(q.user_id) is not None]


def _by_score(df: Any) -> list[set[int]]:
    """The ids grouped by equal score, best first, without the last group (the limit cuts a
    tie between equal scores anywhere; the index orders equal scores as it finds them)."""
    groups: list[set[int]] = []
    last: float | None = None
    for item, score in zip(df["item_id"].to_list(), df["source_score"].to_list(), strict=True):
        if score != last:
            groups.append(set())
            last = score
        groups[-1].add(item)
    return groups[:-1]


@pytest.mark.parametrize("limit", [5, 50, 400, 5000])
def test_masked_search_matches_the_filtered_search(engine: Any, limit: int) -> None:
    assert run_job("collab", JobContext(engine, options={})).ok
    queries = _queries(engine)
    assert queries
    users = engine.collab.users
    filtered = CollabSource(engine.index, users, limit=limit)
    masked = CollabSource(engine.index, users, limit=limit, state=engine.state)
    for q in queries:
        for maturity_max in (0, 2):  # a teen's setting removes the mature clips
            qq = replace(q, context=replace(q.context, maturity_max=maturity_max))
            a = filtered.fetch(qq)
            b = masked.fetch(qq)
            assert b["source_score"].to_list() == a["source_score"].to_list()
            assert _by_score(b) == _by_score(a)
