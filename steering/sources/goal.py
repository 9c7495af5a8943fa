"""Candidate source: clips toward the person's long-term goals (:mod:`steering.goals`)."""

from __future__ import annotations

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery
from ranking.state import FeedState
from steering.goals import GoalService
from steering.sources.more_of import ConceptBestRows

_EMPTY = {"item_id": pl.Int64, "source_score": pl.Float64}


class GoalSource:
    """For a topic goal, its best clips (those naming the topic first, then by concept score,
    as for a standing "more of"); for a friends goal, the newest clips of each friend. A goal
    whose clips are rare among the other sources' candidates could not get its share of the
    page without this. Reads memory only; returns nothing for a person without goals."""

    name = "goal"
    timeout_s = 0.25
    runs_inline = True

    def __init__(
        self, state: FeedState, goals: GoalService, *, limit: int = 60, per_friend: int = 3
    ) -> None:
        self.state = state
        self.goals = goals
        self.per_friend = per_friend
        self.best_rows = ConceptBestRows(limit)

    def enabled(self, query: FeedQuery) -> bool:
        """Only for a person with a goal."""
        return bool(self.goals.goals_of(query.user_id))

    def fetch(self, query: FeedQuery) -> pl.DataFrame:
        """Return the goals' clips with scores in [0, 1]."""
        cat = self.state.catalogue
        ids = np.asarray(cat.item_ids)
        rows: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        for g in self.goals.active(query.user_id):
            if g.scores is not None:
                r = self.best_rows(g.scores)
                r = r[r < len(ids)]
                rows.append(r)
                scores.append(np.linspace(1.0, 0.5, len(r)) if len(r) else np.zeros(0))
                continue
            for friend in sorted(self.state.graph.friends(query.user_id)):
                own = cat.by_author.get(friend, [])
                r = np.asarray(own[-self.per_friend :], dtype=np.int64)
                rows.append(r)
                scores.append(np.full(len(r), 0.5))
        if not rows:
            return pl.DataFrame(schema=_EMPTY)
        all_rows = np.concatenate(rows)
        all_scores = np.concatenate(scores)
        order = np.argsort(-all_scores, kind="stable")
        items, first = np.unique(ids[all_rows[order]].astype(np.int64), return_index=True)
        return pl.DataFrame(
            {"item_id": items, "source_score": all_scores[order][first]}, schema=_EMPTY
        )
