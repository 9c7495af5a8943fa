"""Query hydrator: the user's active moods and standing controls, compiled for this request."""

from __future__ import annotations

from dataclasses import dataclass, field

from ranking.pipeline import FeedQuery
from ranking.query_hydrators.topic_mix import TopicMix
from steering.concepts import ConceptIndex, ConceptScores
from steering.controls import Controls, ControlsService
from steering.moods import CompiledMood, MoodService
from steering.rules import CompiledRule, RuleService

ENERGY_HIGH = "exciting intense energetic action hype fast"
ENERGY_LOW = "calm relaxing peaceful gentle slow soothing"


@dataclass
class SteeringContext:
    """Everything the steering components read for one request
    (``query.context.get(SteeringContext)``).

    ``never``/``more``/``less`` hold concept scores of the standing controls' topics;
    ``energy_high``/``energy_low`` are the two poles of the energy axis (only when a mood asks
    for an energy).
    """

    moods: list[CompiledMood] = field(default_factory=list)
    controls: Controls = field(default_factory=Controls)
    never: list[ConceptScores] = field(default_factory=list)
    more: list[ConceptScores] = field(default_factory=list)
    less: list[ConceptScores] = field(default_factory=list)
    energy_high: ConceptScores | None = None
    energy_low: ConceptScores | None = None
    rules: list[CompiledRule] = field(default_factory=list)

    @property
    def active(self) -> bool:
        """Whether anything steers this request."""
        return bool(self.moods) or bool(self.rules) or not self.controls.is_neutral()


class ActiveMoodQueryHydrator:
    """Puts a :class:`SteeringContext` into the query context, sets ``mood_vectors`` (the
    facets' vectors, for the generated-clips source) and tightens ``maturity_max`` when a mood
    asks for it, or an unscoped standing rule does. Steers the request's
    :class:`~ranking.query_hydrators.topic_mix.TopicMix` (what a calibrated page follows): the
    standing more / less / never topics move it, and an active mood switches calibration off
    (the mood says what the page is about). Reads memory only: a mood created a moment ago
    applies to this page."""

    name = "active_mood"

    def __init__(
        self,
        moods: MoodService,
        controls: ControlsService,
        concepts: ConceptIndex,
        *,
        rules: RuleService | None = None,
    ) -> None:
        self.moods = moods
        self.controls = controls
        self.concepts = concepts
        self.rules = rules

    def hydrate(self, query: FeedQuery) -> None:
        """Put the steering context."""
        ctrl = self.controls.get(query.user_id)
        moods = self.moods.active(query.user_id, now=query.now)
        c = self.concepts
        sc = SteeringContext(
            moods=moods,
            controls=ctrl,
            never=[c.negated(t) for t in ctrl.never_show],
            more=[c.scores(t) for t in ctrl.more_of],
            less=[c.scores(t) for t in ctrl.less_of],
            # Standing rules whose time window holds now (the user's own clock).
            rules=self.rules.active(query.user_id, now=query.now) if self.rules else [],
        )
        if any(m.energy is not None for m in moods):
            sc.energy_high = c.scores(ENERGY_HIGH)
            sc.energy_low = c.scores(ENERGY_LOW)
        caps = [m.maturity_max for m in moods if m.maturity_max is not None]
        caps += [
            r.maturity_max
            for r in sc.rules
            if r.maturity_max is not None and r.scope.author_id is None
        ]
        ctx = query.context
        if caps:
            ctx.maturity_max = min(ctx.maturity_max, min(caps))
        ctx.mood_vectors = tuple(s.vector for m in moods for s in (*m.facets, *m.restrict_to))
        ctx.put(sc)
        mix = ctx.get(TopicMix)
        if mix is not None:
            mix.steer(more=ctrl.more_of, less=ctrl.less_of, never=ctrl.never_show)
            mix.calibrate = mix.calibrate and not moods
