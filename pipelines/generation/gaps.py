"""Gap filling: find demand without supply and queue prompts for it.

Two kinds of gaps:

- **mood facets** of active moods (the ``moods`` table, ``parsed`` JSON) whose best clips are
  far from the facet (best caption cosine below ``gap_mood_threshold``);
- **topics** people engage with that have fewer than ``gap_topic_min_fresh`` clips newer than
  ``gap_fresh_hours``.

Each gap becomes a prompt; prompts the rules refuse are skipped and counted, and a prompt
queued in the last ``gap_dedupe_hours`` is not queued again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.generation.errors import RuleViolation
from ranking.state import COUNTERS, SAFETY_CODES, to_epoch
from storage.store import utcnow

if TYPE_CHECKING:
    from pipelines.generation.service import GenerationService

logger = logging.getLogger(__name__)


@dataclass
class Gap:
    """Demand without supply, and the prompt that would fill it."""

    kind: str
    subject: str
    prompt: str
    demand: float
    supply: float
    topics: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        """Why it was queued, in words."""
        if self.kind == "mood":
            return (
                f"mood facet {self.subject!r} asked by {self.demand:.0f} users; best clip "
                f"similarity {self.supply:.2f}"
            )
        return f"topic {self.subject!r} engagement {self.demand:.0f}; {self.supply:.0f} fresh clips"


def mood_gaps(service: GenerationService) -> list[Gap]:
    """Facets of active moods whose best clips score low."""
    eng = service.engine
    df = eng.store.query(
        "SELECT user_id, parsed FROM moods WHERE deleted_at IS NULL "
        "AND (expires_at IS NULL OR expires_at > ?)",
        [utcnow()],
    )
    askers: dict[str, set[int]] = {}
    for row in df.iter_rows(named=True):
        try:
            parsed = json.loads(row["parsed"])
        except (TypeError, ValueError):
            continue
        for facet in [*parsed.get("facets", []), *parsed.get("restrict_to", [])]:
            text = " ".join(str(facet).lower().split())
            if text:
                askers.setdefault(text, set()).add(int(row["user_id"]))
    if not askers:
        return []
    facets = list(askers)
    st = eng.state
    with st.lock:
        ok = st.catalogue.has_vector & (st.catalogue.safety < SAFETY_CODES["violative"])
        mat = st.catalogue.vectors[ok]
    vecs = eng.embedder.embed(facets)
    best = (vecs @ mat.T).max(axis=1) if mat.shape[0] else np.full(len(facets), -1.0)
    gaps = [
        Gap("mood", f, f"a short video clip of {f}", float(len(askers[f])), float(b))
        for f, b in zip(facets, best.tolist(), strict=True)
        if b < service.settings.gap_mood_threshold
    ]
    return sorted(gaps, key=lambda g: (-g.demand, g.supply))


def topic_gaps(service: GenerationService) -> list[Gap]:
    """Topics with engagement but few fresh clips."""
    st = service.engine.state
    s = service.settings
    now = to_epoch(utcnow())  # ``created`` holds epochs of naive-UTC times
    views, likes = COUNTERS.index("views"), COUNTERS.index("likes")
    demand: dict[str, float] = {}
    fresh: dict[str, int] = {}
    # Copy under the lock, count outside it: the loop is O(catalogue) and feeds need the lock.
    with st.lock:
        eng = st.engagement.counts[:, views] + 2.0 * st.engagement.counts[:, likes]
        is_fresh = st.catalogue.created >= now - s.gap_fresh_hours * 3600.0
        all_topics = list(st.catalogue.topics)
    for r, topics in enumerate(all_topics):
        for t in topics or []:
            demand[t] = demand.get(t, 0.0) + float(eng[r])
            if is_fresh[r]:
                fresh[t] = fresh.get(t, 0) + 1
    gaps = [
        Gap("topic", t, f"a short video clip about {t}", d, float(fresh.get(t, 0)), [t])
        for t, d in demand.items()
        if d > 0 and fresh.get(t, 0) < s.gap_topic_min_fresh
    ]
    return sorted(gaps, key=lambda g: -g.demand)


def queue_gaps(service: GenerationService, *, limit: int | None = None) -> dict[str, Any]:
    """Find gaps and queue up to ``limit`` (default ``gap_max_prompts``) prompts for them."""
    limit = service.settings.gap_max_prompts if limit is None else limit
    found = [*mood_gaps(service), *topic_gaps(service)]
    recent = service.queue.recent_prompts("gap", hours=service.settings.gap_dedupe_hours)
    queued, refused, duplicate = 0, 0, 0
    for gap in found:
        if queued >= limit:
            break
        if gap.prompt in recent:
            duplicate += 1
            continue
        try:
            service.submit(
                gap.prompt,
                requested_by=None,
                kind="gap",
                topics=gap.topics,
                reason=gap.reason,
            )
        except RuleViolation as exc:
            refused += 1
            logger.info("gap prompt %r refused: %s", gap.prompt, exc.message)
            continue
        recent.add(gap.prompt)
        queued += 1
    return {
        "mood_gaps": sum(g.kind == "mood" for g in found),
        "topic_gaps": sum(g.kind == "topic" for g in found),
        "queued": queued,
        "refused": refused,
        "duplicates": duplicate,
    }
