"""Filter: what a mood or a standing control says never to show; annotates what it keeps.

Rules, cheapest first (each removed clip is named with the first rule that removed it, in
``query.context.steering_removed``, so "why not" can answer):

1. ``muted_author:<id>`` - the creator is muted in the standing controls;
2. ``muted_word:<w>`` - the word is in the caption, topics or hashtags;
3. ``never_show:<t>`` - the topic is named in the topics, hashtags or caption words, or the
   clip's calibrated concept score (:mod:`steering.concepts`) is above
   :attr:`MoodExclusionsFilter.threshold`;
4. ``mood_exclusion:<t>`` - the same test for a mood's negated concept ("no news");
5. ``mood_only:<t>`` - a mood says "only X" and the clip scores below
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

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery, FilterResult
from ranking.state import FeedState
from steering.concepts import ConceptIndex, ConceptScores, stems
from steering.query_hydrators.active_mood import SteeringContext

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 2.0
"""Calibrated concept z above which a negated concept removes a clip (tuned on the tuning
prompts of ``steerfeed eval steering``: between 1.0 and 3.0 removal hardly changes once the
scorer demotes what stays, and 2.0 removes few clips of other kinds; see notes/steering.md)."""
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
                self._word_match(rows, c.text) | (c.at(rows) > self.threshold),
                f"never_show:{c.text}",
            )
        for m in sc.moods:
            for c in m.exclusions:
                mark(
                    self._word_match(rows, c.text) | (c.at(rows) > self.threshold),
                    f"mood_exclusion:{c.text}",
                )
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
        avoid = _max_z([c for m in sc.moods for c in m.exclusions] + sc.never, rows)
        more = _max_z(sc.more, rows)
        less = _max_z(sc.less, rows)
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
                lookup.gather(code),
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
