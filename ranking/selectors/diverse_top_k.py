"""Selector: top-k by score with an author cap and topic diversity."""

from __future__ import annotations

from collections import Counter

import polars as pl

from ranking.pipeline import FeedQuery


class DiverseTopKSelector:
    """Greedy pick: at most ``max_per_author`` clips per author per page, and each repeat of a
    topic on the page multiplies a clip's score by ``topic_decay`` (so topics mix)."""

    name = "diverse_top_k"

    def __init__(self, *, max_per_author: int = 2, topic_decay: float = 0.85) -> None:
        self.max_per_author = max_per_author
        self.topic_decay = topic_decay

    def select(self, query: FeedQuery, candidates: pl.DataFrame) -> pl.DataFrame:
        """Return at most ``query.limit`` rows in page order (input is sorted by score)."""
        if candidates.height == 0:
            return candidates
        pool = candidates
        authors = pool["author_id"].to_list()
        topics = pool["topic"].to_list()
        scores = pool["score"].to_list()
        # Shift scores positive so the multiplicative topic decay always lowers them.
        floor = min(scores)
        adj = [s - floor + 1e-6 for s in scores]
        per_author: Counter[int] = Counter()
        per_topic: Counter[str] = Counter()
        chosen: list[int] = []
        remaining = list(range(pool.height))
        while remaining and len(chosen) < query.limit:
            best_i, best_v = -1, -1.0
            capped: list[int] = []
            for j, i in enumerate(remaining):
                if per_author[authors[i]] >= self.max_per_author:
                    capped.append(j)  # a capped author stays capped: never scan it again
                    continue
                v = adj[i] * self.topic_decay ** per_topic[topics[i]]
                if v > best_v:
                    best_i, best_v = j, v
                # Scores are sorted: once the undecayed score cannot win, stop scanning.
                if adj[i] <= best_v:
                    break
            if best_i < 0:
                break
            i = remaining[best_i]
            if capped:
                dead = set(capped)
                dead.add(best_i)
                remaining = [r for j, r in enumerate(remaining) if j not in dead]
            else:
                del remaining[best_i]
            chosen.append(i)
            per_author[authors[i]] += 1
            per_topic[topics[i]] += 1
        return pool[chosen]
