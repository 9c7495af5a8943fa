"""Filter: what a mood or a standing control says never to show; annotates what it keeps.

Rules, cheapest first (each removed clip is named with the first rule that removed it, in
``query.context.steering_removed``, so "why not" can answer):

1. ``muted_author:<id>`` - the creator is muted in the standing controls;
2. ``muted_word:<w>`` - the word is in the caption, topics or hashtags;
3. ``never_show:<t>`` - the topic is named in the topics, hashtags or caption words, the
   clip's calibrated concept score (:mod:`steering.concepts`) is above
   :attr:`MoodExclusionsFilter.threshold`, or the clip is in the negation's extent
   (:meth:`steering.concepts.ConceptIndex.negated`: it shares tags or caption neighbours with
   clips that clearly match);
4. ``mood_exclusion:<t>`` - the same test for a mood's negated concept ("no news");
5. ``rule:<id>:<text>`` - a standing rule (:mod:`steering.rules`) removes it within its
   creator: "never X", "only X", an age cap;
6. ``mood_only:<t>`` - a mood says "only X" and the clip scores below
   :attr:`MoodExclusionsFilter.restrict_threshold` for every X (skipped when it would empty the
   page).

Kept rows get the columns the mood scorer reads (``mood_similarity``, ``mood_energy``,
``mood_less``, ``steer_more``, ``steer_less``, ``steer_avoid``) and an ``_explain`` struct
(``mood``, ``mood_match``, ``rules_applied``) the engine adds to each item's explanation;
``mood_avoid_demoted`` in ``rules_applied`` says a kept clip is somewhat like a negated concept
and was ranked down for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery, FilterResult
from ranking.state import FeedState
from steering.concepts import ConceptIndex, ConceptScores, stems
from steering.moods import CompiledMood
from steering.query_hydrators.active_mood import SteeringContext
from steering.rules import CompiledRule

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 1.5
"""Calibrated concept z above which a negated concept removes a clip (tuned on the tuning
prompts and users of ``steerfeed eval steering``: negation removal 0.798 at 2.0, 0.844 at 1.5
with the stronger ``avoid`` weight, 0.846 at 1.0, which removes many more clips of other
kinds; see docs/benchmarks.md)."""
DEFAULT_RESTRICT_THRESHOLD = 2.0


LEXICAL_Z = 4.0
"""Score floor of a clip that names the concept in its topics, hashtags or caption words: a
concept that covers much of the catalogue has a small calibrated z even where it is named."""

RULE_ACTS_Z = 1.0
"""Calibrated concept z above which a standing more/less rule or a mood's "less" moves a clip
(the mood scorer reads the same floor, so ``rules_applied`` names a rule exactly when it
moved the clip; below it, a typical clip, the rule does nothing)."""


def _max_z(concepts: list[ConceptScores], rows: np.ndarray) -> np.ndarray:
    if not concepts:
        return np.zeros(len(rows))
    return np.asarray(
        np.max(
            np.vstack([np.maximum(c.at(rows), LEXICAL_Z * c.lexical_at(rows)) for c in concepts]),
            axis=0,
        )
    )


def _wanted_z(mood: CompiledMood, rows: np.ndarray) -> np.ndarray:
    """How much each row is like what the mood asks for (its facets and "only" phrases);
    ``-inf`` when it asks for nothing, so a negation alone is never softened."""
    wanted = [*mood.facets, *mood.restrict_to]
    if not wanted:
        return np.full(len(rows), -np.inf)
    return np.asarray(np.max(np.vstack([c.at(rows) for c in wanted]), axis=0))


class MoodExclusionsFilter:
    """Removes clips a mood negates or a standing rule forbids (see the module docstring)."""

    name = "mood_exclusions"

    def __init__(
        self,
        state: FeedState,
        *,
        concepts: ConceptIndex | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        restrict_threshold: float = DEFAULT_RESTRICT_THRESHOLD,
    ) -> None:
        self.state = state
        self.concepts = concepts
        self.threshold = threshold
        self.restrict_threshold = restrict_threshold

    def _word_match(self, rows: np.ndarray, phrase: str) -> np.ndarray:
        """Rows whose caption, topics or hashtags hold every word of ``phrase`` (stemmed)."""
        out = np.zeros(len(rows), dtype=bool)
        if self.concepts is not None:
            # Catalogue-wide mask, cached per phrase: a lookup per request instead of a scan.
            mask = self.concepts.word_mask(phrase)
            ok = (rows >= 0) & (rows < len(mask))
            out[ok] = mask[rows[ok]]
            rest = np.flatnonzero(~ok & (rows >= 0))
        else:
            rest = np.flatnonzero(rows >= 0)
        words = {w for w in stems(phrase) if len(w) > 1}
        if not words:
            return out
        st = self.state
        for i in rest.tolist():  # clips newer than the cached catalogue (rare)
            r = int(rows[i])
            bag = set(stems(st.catalogue.captions[r] or ""))
            for t in (*st.catalogue.topics[r], *st.catalogue.hashtags[r]):
                bag.update(stems(t))
            out[i] = words <= bag
        return out

    def apply(self, query: FeedQuery, candidates: pl.DataFrame) -> FilterResult:
        """Split the candidates and annotate the kept ones."""
        sc = query.context.get(SteeringContext)
        if sc is None or not sc.active:
            return FilterResult(candidates, candidates.clear())
        rows = candidates["row"].to_numpy().astype(np.int64)
        n = len(rows)
        # Index into ``labels`` of the first rule that removed each row (-1: kept).
        reason = np.full(n, -1, dtype=np.int32)
        labels: list[str] = []

        def mark(mask: np.ndarray, label: str) -> None:
            hit = mask & (reason < 0)
            if hit.any():
                reason[hit] = len(labels)
                labels.append(label)

        ctrl = sc.controls
        if ctrl.muted_authors:
            authors = candidates["author_id"].to_numpy()
            for a in ctrl.muted_authors:
                mark(authors == a, f"muted_author:{a}")
        for w in ctrl.muted_words:
            mark(self._word_match(rows, w), f"muted_word:{w}")
        for c in sc.never:
            mark(
                self._word_match(rows, c.text) | (c.at(rows) > self.threshold) | c.extent_at(rows),
                f"never_show:{c.text}",
            )
        for m in sc.moods:
            wanted = _wanted_z(m, rows)
            for c in m.exclusions:
                mark(self._excluded(m, c, rows, wanted), f"mood_exclusion:{c.text}")
        if sc.rules:
            self._apply_rules(sc, candidates, rows, mark, reason)
        restrict = [c for m in sc.moods for c in m.restrict_to]
        if restrict:
            ok = np.zeros(n, dtype=bool)
            for c in restrict:
                ok |= (c.at(rows) > self.restrict_threshold) | c.lexical_at(rows)
            if (ok & (reason < 0)).any():
                mark(~ok, "mood_only:" + "|".join(c.text for c in restrict))
        removed_mask = reason >= 0
        log = query.context.steering_removed
        ids = candidates["item_id"].to_numpy()
        for i in np.flatnonzero(removed_mask).tolist():
            log[int(ids[i])] = labels[int(reason[i])]
        kept = candidates.filter(pl.Series(~removed_mask))
        removed = candidates.filter(pl.Series(removed_mask))
        return FilterResult(self._annotate(sc, kept), removed)

    def _excluded(
        self, mood: CompiledMood, c: ConceptScores, rows: np.ndarray, wanted: np.ndarray
    ) -> np.ndarray:
        """Rows a mood's negated concept ``c`` removes.

        "funny animals but not cats": a dog clip is somewhat like "cats", but more like what
        was asked for; only what is more like the negated concept goes (every clip that names
        it goes whatever it is like). The negation's extent (clips sharing tags or caption
        neighbours with its clear matches) goes only when the mood asks for nothing else:
        tags such as "pets" join dogs to "cats".
        """
        z = c.at(rows)
        alike = (z > self.threshold) & (z > wanted)
        if not (mood.facets or mood.restrict_to):
            alike |= c.extent_at(rows)
        return np.asarray(self._word_match(rows, c.text) | alike)

    def _rule_scope(self, rule: CompiledRule, candidates: pl.DataFrame) -> np.ndarray:
        if rule.scope.author_id is None:
            return np.ones(candidates.height, dtype=bool)
        return np.asarray(candidates["author_id"].to_numpy() == rule.scope.author_id)

    def _only_ok(self, rule: CompiledRule, rows: np.ndarray) -> np.ndarray:
        ok = np.zeros(len(rows), dtype=bool)
        for c in rule.only:
            ok |= (c.at(rows) > self.restrict_threshold) | c.lexical_at(rows)
        return ok

    def _apply_rules(
        self,
        sc: SteeringContext,
        candidates: pl.DataFrame,
        rows: np.ndarray,
        mark: Callable[[np.ndarray, str], None],
        reason: np.ndarray,
    ) -> None:
        """Standing rules (:mod:`steering.rules`), each within its creator: "never X" removes
        X, "only X" removes what is not X, an age cap removes what is above it. An unscoped
        "only" rule that would leave nothing is skipped, as a mood's is."""
        maturity = np.asarray(self.state.catalogue.maturity)[np.clip(rows, 0, None)]
        for rule in sc.rules:
            scope = self._rule_scope(rule, candidates)
            for c in rule.never:
                hit = (
                    self._word_match(rows, c.text)
                    | (c.at(rows) > self.threshold)
                    | c.extent_at(rows)
                )
                mark(scope & hit, rule.label)
            if rule.only:
                ok = self._only_ok(rule, rows)
                if rule.scope.author_id is not None or (ok & (reason < 0)).any():
                    mark(scope & ~ok, rule.label)
            if rule.maturity_max is not None and rule.scope.author_id is not None:
                mark(scope & (maturity > rule.maturity_max), rule.label)

    def _rule_effects(
        self, sc: SteeringContext, kept: pl.DataFrame, rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
        """What the kept rows get from the standing rules: more/less scores (within each
        rule's creator) and, per row, the labels of the rules that acted on it (an "only" rule
        it passed, a "more"/"less" it matched, a "never" it is somewhat like)."""
        n = kept.height
        more = np.zeros(n)
        less = np.zeros(n)
        labels: list[list[str]] = [[] for _ in range(n)]
        t = self.restrict_threshold
        for rule in sc.rules:
            scope = self._rule_scope(rule, kept)
            acted = np.zeros(n, dtype=bool)
            if rule.only:
                acted |= scope & self._only_ok(rule, rows)
            if rule.more:
                z = np.where(scope, _max_z(rule.more, rows), 0.0)
                more = np.maximum(more, z)
                acted |= z > t
            if rule.less:
                z = np.where(scope, _max_z(rule.less, rows), 0.0)
                less = np.maximum(less, z)
                acted |= z > t
            if rule.never:
                acted |= scope & (_max_z(rule.never, rows) > 0.0)
            if rule.maturity_max is not None:
                acted |= scope
            for i in np.flatnonzero(acted).tolist():
                labels[i].append(rule.label)
        return more, less, labels

    def _annotate(self, sc: SteeringContext, kept: pl.DataFrame) -> pl.DataFrame:
        rows = kept["row"].to_numpy().astype(np.int64)
        facets = [c for m in sc.moods for c in (*m.facets, *m.restrict_to)]
        sim = _max_z(facets, rows) if facets else np.zeros(len(rows))
        energy = np.zeros(len(rows))
        target = [m.energy for m in sc.moods if m.energy is not None]
        if target and sc.energy_high is not None and sc.energy_low is not None:
            axis = sc.energy_high.at(rows) - sc.energy_low.at(rows)
            energy = float(np.mean(target)) * np.clip(axis, -6.0, 6.0)
        mood_less = _max_z([c for m in sc.moods for c in m.less], rows)
        avoid = _max_z(sc.never, rows)
        for m in sc.moods:
            if m.exclusions:
                # What is more like the wanted facets than the negated concept is not sunk.
                excl = _max_z(m.exclusions, rows) - np.clip(_wanted_z(m, rows), 0.0, None)
                avoid = np.maximum(avoid, excl)
        more = _max_z(sc.more, rows)
        less = _max_z(sc.less, rows)
        rule_labels: list[list[str]] | None = None
        if sc.rules:
            rule_more, rule_less, rule_labels = self._rule_effects(sc, kept, rows)
            more = np.maximum(more, rule_more)
            less = np.maximum(less, rule_less)
        mood_text = "; ".join(m.text for m in sc.moods) or None
        more_t = ",".join(c.text for c in sc.more)
        less_t = ",".join(c.text for c in sc.less)
        common: list[str] = []
        if sc.moods:
            common.append(f"mood:{mood_text}")
        if abs(sc.controls.connected_vs_global - 0.5) > 1e-9:
            common.append(f"connected_vs_global={sc.controls.connected_vs_global:g}")
        t = RULE_ACTS_Z
        flags = [
            (more > t) if more_t else np.zeros(len(rows), dtype=bool),
            (less > t) if less_t else np.zeros(len(rows), dtype=bool),
            mood_less > t,
            avoid > 0.0,
        ]
        labels = [f"more_of:{more_t}", f"less_of:{less_t}", "mood_less", "mood_avoid_demoted"]
        # Sixteen possible rule lists: build them once and gather by a per-row code (building a
        # list column from Python lists costs milliseconds per page).
        code = sum(f.astype(np.int64) << k for k, f in enumerate(flags))
        lookup = pl.Series(
            "rules_applied",
            [[lab for k, lab in enumerate(labels) if c >> k & 1] + common for c in range(16)],
            dtype=pl.List(pl.String),
        )
        n = len(rows)
        applied = lookup.gather(code)
        if rule_labels is not None and any(rule_labels):
            applied = pl.Series(
                "rules_applied",
                [base + extra for base, extra in zip(applied.to_list(), rule_labels, strict=True)],
                dtype=pl.List(pl.String),
            )
        if facets:
            match: np.ndarray | None = np.round(1.0 / (1.0 + np.exp(-(sim - 2.0))), 3)
        elif sc.moods:
            # A mood of negations only ("nothing scary"): the match is how unlike the negated
            # and "less" concepts the clip is (it acted on every clip it kept).
            match = np.round(1.0 / (1.0 + np.exp(np.maximum(avoid, mood_less) - 2.0)), 3)
        else:
            match = None
        no_match = pl.Series("mood_match", [None], dtype=pl.Float64).new_from_index(0, n)
        explain = pl.DataFrame(
            [
                pl.Series("mood", [mood_text], dtype=pl.String).new_from_index(0, n),
                no_match if match is None else pl.Series("mood_match", match, dtype=pl.Float64),
                applied,
            ]
        ).to_struct("_explain")
        out = kept.with_columns(
            pl.Series("mood_similarity", sim, dtype=pl.Float64),
            pl.Series("mood_energy", energy, dtype=pl.Float64),
            pl.Series("mood_less", mood_less, dtype=pl.Float64),
            pl.Series("steer_more", more, dtype=pl.Float64),
            pl.Series("steer_less", less, dtype=pl.Float64),
            pl.Series("steer_avoid", avoid, dtype=pl.Float64),
        )
        if "_explain" in out.columns and isinstance(out.schema["_explain"], pl.Struct):
            prev = out["_explain"].struct.unnest()
            new = explain.struct.unnest()
            prev = prev.drop([c for c in new.columns if c in prev.columns])
            explain = pl.concat([prev, new], how="horizontal").to_struct("_explain")
        return out.with_columns(explain)
