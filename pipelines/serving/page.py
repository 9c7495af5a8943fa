"""The served page: one typed model that :meth:`Engine.feed` returns and the API serialises.

Built once per request by the engine (:meth:`~pipelines.serving.engine.Engine.feed`) and
returned by ``GET /v1/feed`` as it is: FastAPI does not validate it again, and the OpenAPI
schema documents every field (the explanation, the governor block, the survey and stop cards).
What the page was made from (removed clips, timings, the request context) rides along as
:attr:`FeedPage.diagnostics`, which is never serialised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from ranking.context import RequestContext
from ranking.overrides import RequestOverrides
from wellbeing.cards import GovernorCard, StopCard, SurveyCard


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FeatureContribution(_Out):
    """One feature's push on the item's score (positive: pushed it up)."""

    feature: str = Field(description="feature name (see docs/api.md for the words used)")
    contribution: float = Field(description="signed contribution to the ranking value")


class Explanation(_Out):
    """Why an item is on the page. Fields a stage did not fill are null (or empty lists)."""

    source: str = Field(description="the candidate source that found the clip")
    top_features: list[FeatureContribution] = Field(
        description="strongest feature contributions, largest first"
    )
    model: str | None = Field(
        default=None, description="learned model version that explained it (null: hand-weighted)"
    )
    why: list[str] = Field(default_factory=list, description="what pushed it up, in words")
    held_back: list[str] = Field(default_factory=list, description="what pulled it down, in words")
    mood: str | None = Field(default=None, description="the active mood(s), when one steers")
    mood_match: float | None = Field(
        default=None, description="0..1: how well the clip matches the mood's facets"
    )
    rules_applied: list[str] = Field(
        default_factory=list,
        description="steering rules that moved it (more_of:..., less_of:..., mood:...)",
    )
    generated: bool = Field(default=False, description="an AI-generated clip")
    made_for_your_mood: bool = Field(
        default=False, description="brought by the 'made for your mood' source"
    )
    media_url: str | None = Field(
        default=None, description="the generated clip's video (signed for this page if needed)"
    )


class FeedItem(_Out):
    """A clip on a page and why it is there."""

    item_id: int
    author_id: int
    caption: str
    topics: list[str]
    position: int = Field(ge=0, description="0-based slot on the page")
    score: float = Field(description="the final ranking value")
    source: str = Field(description="the candidate source that found it")
    reason: str = Field(description="one line for the user: why this clip")
    is_generated: bool
    explanation: Explanation


@dataclass
class PageDiagnostics:
    """How a page was made (kept with the page in process, never serialised)."""

    removed: dict[int, str] = field(default_factory=dict)
    """Clip id -> the filter that removed it."""
    timings_ms: dict[str, float] = field(default_factory=dict)
    """Milliseconds per stage and component (``qh.<name>``, ``src.<name>``, ``total`` ...)."""
    n_candidates: int = 0
    """Candidates the sources returned."""
    skipped: list[str] = field(default_factory=list)
    """Components whose ``enabled(query)`` said no."""
    context: RequestContext = field(default_factory=RequestContext)
    """The request context the hydrators filled."""
    overrides: RequestOverrides = field(default_factory=RequestOverrides)
    """The overrides the request was served with (experiment arms applied)."""


class FeedPage(_Out):
    """A page of the feed. Pass ``next_cursor`` to get the next page."""

    user_id: int
    request_id: str = Field(description="send it back with the page's events")
    session_id: str
    page: int = Field(ge=0, description="0-based page number in the session")
    pipeline: str = Field(description="the product that served it: home or following_only")
    items: list[FeedItem]
    next_cursor: str | None = Field(description="null: nothing more to serve in this session")
    degraded_sources: list[str] = Field(
        description="candidate sources that failed or timed out (the page is served without)"
    )
    governor: GovernorCard | None = Field(
        default=None, description="the time-limit governor's state"
    )
    survey: SurveyCard | None = Field(default=None, description="a survey drawn for this page")
    stop_card: StopCard | None = Field(
        default=None, description="present when a time limit is reached (items is empty)"
    )

    _diagnostics: PageDiagnostics = PrivateAttr(default_factory=PageDiagnostics)

    @property
    def diagnostics(self) -> PageDiagnostics:
        """How the page was made (not part of the response)."""
        return self._diagnostics

    def with_diagnostics(self, diagnostics: PageDiagnostics) -> FeedPage:
        """This page, carrying ``diagnostics``."""
        self._diagnostics = diagnostics
        return self
