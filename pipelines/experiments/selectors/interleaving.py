"""Selector: team-draft interleaving of two rankers on one page, for interleaving experiments."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import polars as pl

from pipelines.experiments.definitions import Experiment
from pipelines.experiments.interleaving import team_draft_interleave
from pipelines.experiments.query_hydrators.experiment_arms import HOLDBACK_ARM
from ranking.overrides import RequestOverrides
from ranking.pipeline import FeedQuery, Scorer, Selector, is_enabled

logger = logging.getLogger(__name__)

#: Key, in ``query.context["experiments"]`` (logged as the impression's ``experiments`` JSON),
#: of the page's interleaving record: ``{"experiment", "a", "b"}`` (names) and
#: ``"team_a"`` / ``"team_b"`` (the item ids each ranker contributed).
INTERLEAVING_KEY = "_interleaving"


class InterleavingSelector:
    """Wraps a selector; for a user in a running interleaving experiment (one whose
    ``interleave`` names two arms ``[a, b]``), builds the page by team-draft interleaving
    ranking A and ranking B, otherwise returns the wrapped selector's page unchanged.

    Ranking X is the wrapped selector's page after re-running the pipeline's scorers with
    arm X's overrides (on top of the request's overrides less those the user's own arm set),
    so the two rankers differ exactly by their arms' settings (value weights, ranker model,
    taper...). The coin flips are seeded by the request id. The teams are recorded in
    ``query.context.experiment_records["_interleaving"]`` (:data:`INTERLEAVING_KEY`), which the
    impression log carries. A failure while interleaving is logged and the wrapped page served.

    Parameters
    ----------
    inner : Selector
        Picks and orders each ranker's page (e.g. the diverse top-k).
    running : Callable[[], list[Experiment]]
        The running experiments (the repository's cached list).
    scorers : Callable[[], Sequence[Scorer]]
        The product's scorers (declared after the selector, so read when a page is built).
    """

    name = "interleaving"

    def __init__(
        self,
        inner: Selector,
        *,
        running: Callable[[], list[Experiment]],
        scorers: Callable[[], Sequence[Scorer]],
    ) -> None:
        self.inner = inner
        self.running = running
        self.scorers = scorers

    def select(self, query: FeedQuery, candidates: pl.DataFrame) -> pl.DataFrame:
        """Return at most ``query.limit`` rows in page order."""
        exp = self._experiment(query)
        if exp is None or candidates.height == 0:
            return self.inner.select(query, candidates)
        try:
            return self._interleave(query, candidates, exp)
        except Exception:  # the page must come back: serve the wrapped ranker's
            logger.exception("interleaving %s failed; serving the plain page", exp.name)
            return self.inner.select(query, candidates)

    def _experiment(self, query: FeedQuery) -> Experiment | None:
        exposure = query.context.experiments
        if not exposure:
            return None
        try:
            experiments = self.running()
        except Exception:
            logger.exception("could not read running experiments; not interleaving")
            return None
        for exp in experiments:  # first by name, as the arms hydrator resolves clashes
            arm = exposure.get(exp.name)
            if exp.interleave is not None and arm is not None and arm != HOLDBACK_ARM:
                return exp
        return None

    def _ranking(
        self, query: FeedQuery, candidates: pl.DataFrame, overrides: RequestOverrides
    ) -> pl.DataFrame:
        q = replace(query, overrides=overrides, context=query.context.copy())
        scored = candidates
        for s in self.scorers():
            if not is_enabled(s, q):  # e.g. the learned scorer when the arm names no model
                continue
            scores = np.asarray(s.score(q, scored), dtype=np.float64)
            scored = scored.with_columns(
                pl.Series("score", scores), pl.Series(f"score_{s.name}", scores)
            )
        return self.inner.select(q, scored.sort("score", descending=True))

    def _interleave(
        self, query: FeedQuery, candidates: pl.DataFrame, exp: Experiment
    ) -> pl.DataFrame:
        assert exp.interleave is not None
        name_a, name_b = exp.interleave
        own = exp.arm(query.context.experiments[exp.name]).overrides.as_dict()
        # The request's overrides less those the user's own arm set.
        base = RequestOverrides.model_validate(
            {k: v for k, v in query.overrides.as_dict().items() if k not in own}
        )
        page_a = self._ranking(query, candidates, base.merged(exp.arm(name_a).overrides))
        page_b = self._ranking(query, candidates, base.merged(exp.arm(name_b).overrides))
        ids_a = [int(i) for i in page_a["item_id"].to_list()]
        ids_b = [int(i) for i in page_b["item_id"].to_list()]
        rng = np.random.default_rng(_seed(query.request_id))
        items, teams = team_draft_interleave(ids_a, ids_b, query.limit, rng)
        row_of = {int(i): r for r, i in enumerate(candidates["item_id"].to_list())}
        out = candidates[[row_of[i] for i in items]]
        query.context.experiment_records[INTERLEAVING_KEY] = {
            "experiment": exp.name,
            "a": name_a,
            "b": name_b,
            "team_a": [i for i, t in zip(items, teams, strict=True) if t == "a"],
            "team_b": [i for i, t in zip(items, teams, strict=True) if t == "b"],
        }
        logger.debug(
            "interleaved experiment=%s request=%s page=%d a=%d b=%d",
            exp.name,
            query.request_id,
            len(items),
            teams.count("a"),
            teams.count("b"),
        )
        return out


def _seed(request_id: str) -> int:
    digest = hashlib.blake2b(f"interleave:{request_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")
