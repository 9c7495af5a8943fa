"""Post-selection hydrator: a clip on the page for a goal says so in its explanation."""

from __future__ import annotations

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery
from steering.goals import GoalService


class GoalExplanationPostHydrator:
    """Adds the goal's label (``goal:<id>:<text>``) to ``rules_applied`` and "toward your
    goal: <text>" first in ``why`` for each page clip that serves one of the person's goals
    (the first goal it serves), however it came onto the page. Runs after the learned
    explanations, which rewrite ``why``."""

    name = "goal_explanation"

    def __init__(self, goals: GoalService) -> None:
        self.goals = goals

    def enabled(self, query: FeedQuery) -> bool:
        """Only for a person with a goal."""
        return bool(self.goals.goals_of(query.user_id))

    def hydrate(self, query: FeedQuery, page: pl.DataFrame) -> pl.DataFrame:
        """Return the page with the goal named in the explanation of its goal clips."""
        if page.height == 0 or "row" not in page.columns:
            return page
        rows = page["row"].to_numpy().astype(np.int64)
        labels: list[str | None] = [None] * page.height
        for g in self.goals.active(query.user_id):
            for i in np.flatnonzero(self.goals.serves(g, query.user_id, rows)).tolist():
                labels[i] = labels[i] or g.goal.label
        if not any(labels):
            return page
        prev = (
            page["_explain"].struct.unnest()
            if "_explain" in page.columns and isinstance(page.schema["_explain"], pl.Struct)
            else pl.DataFrame({"_n": np.zeros(page.height)}).drop("_n")
        )
        applied = prev["rules_applied"].to_list() if "rules_applied" in prev.columns else None
        why = prev["why"].to_list() if "why" in prev.columns else None
        new_applied: list[list[str]] = []
        new_why: list[list[str]] = []
        for i, label in enumerate(labels):
            a = list((applied[i] if applied else None) or [])
            w = list((why[i] if why else None) or [])
            if label is not None:
                a.append(label)
                w.insert(0, f"toward your goal: {label.split(':', 2)[2]}")
            new_applied.append(a)
            new_why.append(w)
        cols = [
            pl.Series("rules_applied", new_applied, dtype=pl.List(pl.String)),
            pl.Series("why", new_why, dtype=pl.List(pl.String)),
        ]
        kept = prev.drop([c for c in ("rules_applied", "why") if c in prev.columns])
        explain = pl.DataFrame([*kept.get_columns(), *cols]).to_struct("_explain")
        return page.with_columns(explain)
