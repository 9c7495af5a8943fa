"""The request context: the typed facts query hydrators add to one feed request.

:class:`RequestContext` is what ``FeedQuery.context`` holds. Each query hydrator sets its own
fields and each reader reads typed fields, so a misspelt key is a mypy error, not a silent
``None``:

- the requesting user (:class:`~ranking.query_hydrators.user_context.UserContextQueryHydrator`):
  ``timezone``, ``maturity_max``, ``user_vector``, ``following``, ``friends``, ``blocked``,
  ``seen``;
- the experiments (the experiment-arms hydrator and the exploring and interleaving
  selectors): ``experiments`` (experiment -> arm) and ``experiment_records`` (per-page records
  logged with the impressions);
- steering (the active-mood hydrator and the mood-exclusions filter): ``mood_vectors`` (what
  the "made for your mood" source aims at) and ``steering_removed`` (which rule removed a clip);
- the learned ranker (the learned scorer): ``learned_ranker`` (model and weights used);
- the person's data controls (:class:`~ranking.query_hydrators.data_controls.
  DataControlsQueryHydrator`, first of all): ``signals``, the
  :class:`~ranking.signals.SignalGate` every component that uses a signal reads.

Facts whose type belongs to a domain above ranking (steering's ``SteeringContext``, the
governor's ``GovernorView``, the wellbeing page cards) are kept by their type:
``context.put(fact)`` stores one, ``context.get(SteeringContext)`` returns it typed, or ``None``
when no hydrator put one. Ranking never names those types, so it imports no domain, and a
domain reads back exactly the type it stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np

from ranking.signals import SignalGate

T = TypeVar("T")

#: The strictest maturity (0: general audience). A request is held to it until the user's
#: settings are read (:class:`~ranking.query_hydrators.user_context.UserContextQueryHydrator`).
STRICTEST_MATURITY = 0


@dataclass(frozen=True)
class LearnedRankerUse:
    """What the learned scorer served a request with.

    ``model`` is the model version (``None`` for a model never saved), or ``"hand_weighted"``
    when no learned model served;
    ``weights`` are the value-model weights used (experiment overrides applied), ``None`` with
    the hand-weighted fallback.
    """

    model: str | None
    weights: dict[str, float] | None = None


@dataclass
class RequestContext:
    """Facts about one feed request, filled by the query hydrators (see the module docstring).

    Every field has a safe default for a request whose hydrator did not run: no vector, empty
    graph sets, the strictest maturity, no experiment exposure.
    """

    # -- the person's data controls ----------------------------------------------------------
    signals: SignalGate = field(default_factory=SignalGate)
    """Which signals this request may use, and its city (default: every signal, no city)."""

    # -- the requesting user ----------------------------------------------------------------
    timezone: str | None = None
    """The user's IANA time zone (``None``: not hydrated; readers fall back to the state)."""
    maturity_max: int = STRICTEST_MATURITY
    """Highest clip maturity the user may see (the user's setting, capped for teens and by
    an active mood)."""
    user_vector: np.ndarray | None = None
    """The user's taste vector in the caption space (``None``: no history yet)."""
    following: set[int] = field(default_factory=set)
    """Users the requester follows (this and the next three are the serving state's own sets:
    read them, never change them)."""
    friends: set[int] = field(default_factory=set)
    """Users who follow the requester back."""
    blocked: set[int] = field(default_factory=set)
    """Users the requester blocked or muted."""
    seen: set[int] = field(default_factory=set)
    """Clips the requester has already been shown or watched."""

    # -- experiments --------------------------------------------------------------------------
    experiments: dict[str, str] = field(default_factory=dict)
    """Experiment name -> arm the user is served (``_holdback`` for the long-term holdback)."""
    experiment_records: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-page records of the experiment selectors, keyed ``_exploration`` / ``_interleaving``;
    logged with each impression beside the arms (:meth:`logged_experiments`)."""

    # -- steering -----------------------------------------------------------------------------
    mood_vectors: tuple[np.ndarray, ...] = ()
    """Unit vectors of the active moods' facets (what the generated-clips source aims at)."""
    steering_removed: dict[int, str] = field(default_factory=dict)
    """Clip id -> the steering rule that removed it (``never_show:news`` ...), for "why not"."""

    # -- the learned ranker ------------------------------------------------------------------
    learned_ranker: LearnedRankerUse | None = None
    """The model and weights the learned scorer used (``None``: the scorer did not run)."""

    # -- domain facts, by type ----------------------------------------------------------------
    _facts: dict[type, object] = field(default_factory=dict, repr=False)

    def put(self, fact: object) -> None:
        """Keep a domain fact under its own type (replacing one of the same type)."""
        self._facts[type(fact)] = fact

    def get(self, kind: type[T]) -> T | None:
        """The fact of type ``kind`` a hydrator put, or ``None``."""
        fact = self._facts.get(kind)
        return fact if isinstance(fact, kind) else None

    def logged_experiments(self) -> dict[str, Any]:
        """The ``experiments`` JSON an impression carries: the arms and the page's records."""
        return {**self.experiments, **self.experiment_records}

    def copy(self) -> RequestContext:
        """A copy whose pipeline-written containers (experiments, records, steering removals,
        facts) can change without touching this one's; the user's sets are shared (read-only:
        they are the serving state's own)."""
        return replace(
            self,
            experiments=dict(self.experiments),
            experiment_records=dict(self.experiment_records),
            steering_removed=dict(self.steering_removed),
            _facts=dict(self._facts),
        )
