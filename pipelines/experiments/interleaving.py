"""Team-draft interleaving: compare two rankers on the same page.

Each page interleaves ranking A and ranking B (Radlinski, Kurup, Joachims 2008): the team with
fewer picks so far (a coin flip on ties) adds its highest-ranked item not yet on the page. Clicks
credit the team that contributed the clicked item; the ranker with more credited clicks wins
the page. Over many pages a two-sided sign test asks whether one ranker wins more often.
Interleaving needs far fewer users than an A/B test to detect a ranking preference.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
from scipy import stats as sps

from pipelines.experiments.errors import StatsInputError

logger = logging.getLogger(__name__)

Team = Literal["a", "b"]
Outcome = Literal["a", "b", "tie"]
ItemT = TypeVar("ItemT", bound=Hashable)


@dataclass(frozen=True)
class InterleavingResult:
    """Aggregate of many interleaved pages.

    Attributes
    ----------
    wins_a, wins_b, ties : int
        Pages won by each ranker, and pages with equal credit (including no clicks).
    preference_b : float
        ``(wins_b + ties / 2) / n - 0.5`` in ``[-0.5, 0.5]``; positive favours ranker B.
    p_value : float
        Two-sided sign test (binomial, p = 1/2) over the pages with a winner.
    """

    wins_a: int
    wins_b: int
    ties: int
    preference_b: float
    p_value: float

    @property
    def n(self) -> int:
        """Number of pages."""
        return self.wins_a + self.wins_b + self.ties


def team_draft_interleave(
    ranking_a: Sequence[ItemT],
    ranking_b: Sequence[ItemT],
    k: int,
    rng: np.random.Generator,
) -> tuple[list[ItemT], list[Team]]:
    """Interleave two rankings by team draft.

    Parameters
    ----------
    ranking_a, ranking_b : Sequence
        Item ids in each ranker's order (best first); each without duplicates.
    k : int
        Page length; the page is shorter if the two rankings hold fewer distinct items.
    rng : numpy.random.Generator
        Source of the coin flips.

    Returns
    -------
    tuple[list, list[{'a', 'b'}]]
        The page (no duplicates) and, per position, the team that contributed the item.
        While both rankings have items left, the two teams' counts differ by at most one.

    Raises
    ------
    StatsInputError
        On ``k < 0`` or a ranking that repeats an item.
    """
    if k < 0:
        msg = f"k must be >= 0, got {k}"
        raise StatsInputError(msg)
    for name, ranking in (("ranking_a", ranking_a), ("ranking_b", ranking_b)):
        if len(set(ranking)) != len(ranking):
            msg = f"{name} repeats items"
            raise StatsInputError(msg)
    page: list[ItemT] = []
    teams: list[Team] = []
    shown: set[ItemT] = set()
    cursor = {"a": 0, "b": 0}
    rankings: dict[Team, Sequence[ItemT]] = {"a": ranking_a, "b": ranking_b}
    picks = {"a": 0, "b": 0}

    def next_item(team: Team) -> ItemT | None:
        ranking = rankings[team]
        while cursor[team] < len(ranking) and ranking[cursor[team]] in shown:
            cursor[team] += 1
        return ranking[cursor[team]] if cursor[team] < len(ranking) else None

    while len(page) < k:
        cand = {team: next_item(team) for team in ("a", "b")}
        if cand["a"] is None and cand["b"] is None:
            break
        team: Team
        if cand["a"] is None:
            team = "b"
        elif cand["b"] is None:
            team = "a"
        elif picks["a"] != picks["b"]:
            team = "a" if picks["a"] < picks["b"] else "b"
        else:
            team = "a" if rng.random() < 0.5 else "b"
        item = cand[team]
        assert item is not None  # chosen team always has a candidate
        page.append(item)
        teams.append(team)
        shown.add(item)
        picks[team] += 1
    return page, teams


def interleaving_credit(teams: Sequence[Team], clicked_positions: Iterable[int]) -> Outcome:
    """Winner of one interleaved page.

    Parameters
    ----------
    teams : Sequence[{'a', 'b'}]
        Team per position, from :func:`team_draft_interleave`.
    clicked_positions : Iterable[int]
        0-based positions the user clicked (repeats count once).

    Returns
    -------
    {'a', 'b', 'tie'}
        The team with more clicked items; ``tie`` on equal credit or no clicks.

    Raises
    ------
    StatsInputError
        On a position outside the page.
    """
    credit = {"a": 0, "b": 0}
    for pos in set(clicked_positions):
        if not 0 <= pos < len(teams):
            msg = f"clicked position {pos} outside the page of {len(teams)} items"
            raise StatsInputError(msg)
        credit[teams[pos]] += 1
    if credit["a"] == credit["b"]:
        return "tie"
    return "a" if credit["a"] > credit["b"] else "b"


def interleaving_test(outcomes: Iterable[Outcome]) -> InterleavingResult:
    """Sign test over many pages' outcomes.

    Parameters
    ----------
    outcomes : Iterable[{'a', 'b', 'tie'}]
        One outcome per page (:func:`interleaving_credit`).

    Returns
    -------
    InterleavingResult
        Win counts, preference for B and the two-sided binomial p-value (1 without winners).

    Raises
    ------
    StatsInputError
        On an outcome other than ``a``, ``b`` or ``tie``, or no pages.
    """
    counts = Counter(outcomes)
    unknown = set(counts) - {"a", "b", "tie"}
    if unknown:
        msg = f"unknown interleaving outcomes {sorted(map(str, unknown))}; valid: a, b, tie"
        raise StatsInputError(msg)
    wins_a, wins_b, ties = counts["a"], counts["b"], counts["tie"]
    n = wins_a + wins_b + ties
    if n == 0:
        msg = "interleaving_test needs at least one page"
        raise StatsInputError(msg)
    decided = wins_a + wins_b
    p = float(sps.binomtest(wins_b, decided, 0.5).pvalue) if decided else 1.0
    result = InterleavingResult(
        wins_a=wins_a,
        wins_b=wins_b,
        ties=ties,
        preference_b=(wins_b + ties / 2.0) / n - 0.5,
        p_value=p,
    )
    logger.info(
        "interleaving pages=%d wins_a=%d wins_b=%d ties=%d p=%.3g", n, wins_a, wins_b, ties, p
    )
    return result
