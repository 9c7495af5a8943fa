"""Selector: the person's goals get a bounded share of the page, never more."""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery, Selector
from steering.goals import GoalService


class GoalShareSelector:
    """Wraps a selector. When the page holds fewer clips toward the person's goals than
    ``share`` of the page, the best-scored goal clips among the candidates take the places of
    the lowest-ranked clips that serve no goal, spread through the page (not all at its end).
    Clips already on the page for other reasons count toward the share and are never removed;
    nothing is added beyond the share, so a goal is an intent, not a quota that crowds out the
    rest. (What a goal clip says is added after selection, by
    :class:`~steering.post_hydrators.goal_explanation.GoalExplanationPostHydrator`, whichever
    stage put it on the page.)
    """

    name = "goal_share"

    def __init__(self, inner: Selector, goals: GoalService) -> None:
        self.inner = inner
        self.goals = goals

    def select(self, query: FeedQuery, candidates: pl.DataFrame) -> pl.DataFrame:
        """Return the inner page with goal clips brought up to the share."""
        page = self.inner.select(query, candidates)
        active = self.goals.active(query.user_id) if page.height else []
        if not active or "row" not in candidates.columns:
            return page
        uid = query.user_id
        page_rows = page["row"].to_numpy().astype(np.int64)
        cand_rows = candidates["row"].to_numpy().astype(np.int64)
        page_label: list[str | None] = [None] * page.height
        cand_label: list[str | None] = [None] * candidates.height
        for g in active:  # the first goal a clip serves names it
            for labels, rows in ((page_label, page_rows), (cand_label, cand_rows)):
                hit = self.goals.serves(g, uid, rows)
                for i in np.flatnonzero(hit).tolist():
                    labels[i] = labels[i] or g.goal.label
        target = math.floor(self.goals.settings.share * query.limit + 1e-9)
        have = sum(lab is not None for lab in page_label)
        missing = min(target - have, page.height)
        if missing > 0:
            on_page = set(page["item_id"].to_list())
            score = candidates["score"].to_numpy() if "score" in candidates.columns else None
            cand_ids = candidates["item_id"].to_list()
            pool: list[int] = [
                i
                for i, lab in enumerate(cand_label)
                if lab is not None and cand_ids[i] not in on_page
            ]
            if score is not None:
                pool.sort(key=lambda i: -float(score[i]))
            # Round robin over goals, so one goal does not take every place.
            by_goal: dict[str, list[int]] = {}
            for i in pool:
                by_goal.setdefault(str(cand_label[i]), []).append(i)
            picks: list[int] = []
            while len(picks) < missing and any(by_goal.values()):
                for lst in by_goal.values():
                    if lst and len(picks) < missing:
                        picks.append(lst.pop(0))
            if picks:
                page, page_label = self._place(page, page_label, candidates, cand_label, picks)
        return page

    @staticmethod
    def _place(
        page: pl.DataFrame,
        page_label: list[str | None],
        candidates: pl.DataFrame,
        cand_label: list[str | None],
        picks: list[int],
    ) -> tuple[pl.DataFrame, list[str | None]]:
        """Drop the lowest-ranked non-goal rows and put ``picks`` at even places."""
        n = page.height
        # The lowest-ranked clips that serve no goal make the room.
        free = set([i for i in range(n) if page_label[i] is None][::-1][: len(picks)])
        picks = picks[: len(free)]
        extra = candidates[picks]
        combined = pl.concat(
            [page, extra.select([c for c in page.columns if c in extra.columns])],
            how="diagonal_relaxed",
        ).select(page.columns)
        seq = [i for i in range(n) if i not in free]
        step = n / (len(picks) + 1)
        for k in range(len(picks)):
            seq.insert(min(len(seq), round(step * (k + 1))), n + k)
        labels = [page_label[i] if i < n else cand_label[picks[i - n]] for i in seq]
        return combined[seq], labels
