"""Steering endpoints: moods, standing controls, interests and "why not"."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from api.http.deps import EngineDep, PrincipalDep, parent_links
from api.http.errors import errors
from pipelines.serving.products.home import HOME
from steering.controls import MAX_MUTED_AUTHORS, MAX_RULE_CHARS, MAX_RULES, ControlsError
from steering.errors import MoodParseError, MoodTooLongError, SteeringError
from steering.goals import MAX_GOAL_TEXT, GoalError
from steering.interests import InterestService
from steering.rules import MAX_RULE_TEXT, RuleError
from steering.why_not import why_not

router = APIRouter(prefix="/v1/users", tags=["steering"])

UserId = Annotated[int, Path(ge=0, le=2**62)]


class MoodIn(BaseModel):
    """A mood prompt ("something calm, nature, no news")."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=10_000)
    scope: Literal["session", "standing"] = "session"
    strength: float | None = Field(default=None, ge=0.0, le=1.0)


# One rule as sent: at most MAX_RULE_CHARS once spaces are collapsed, so allow some slack.
RuleText = Annotated[str, Field(max_length=2 * MAX_RULE_CHARS)]
RuleList = Annotated[list[RuleText], Field(max_length=MAX_RULES)]


class ControlsIn(BaseModel):
    """Fields of the standing controls to change (others stay as they are). Each list holds
    at most 100 entries of at most 80 characters; ``muted_authors`` at most 1,000 ids."""

    model_config = ConfigDict(extra="forbid")

    never_show: RuleList | None = None
    more_of: RuleList | None = None
    less_of: RuleList | None = None
    muted_words: RuleList | None = None
    muted_authors: (
        Annotated[list[Annotated[int, Field(ge=0, le=2**62)]], Field(max_length=MAX_MUTED_AUTHORS)]
        | None
    ) = None
    maturity_max: int | None = Field(default=None, ge=0, le=3)
    connected_vs_global: float | None = Field(default=None, ge=0.0, le=1.0)
    personalized: bool | None = None


class RuleIn(BaseModel):
    """A standing rule in plain words ("never horror after 21:00", "from @chef_ana only
    recipes"); at most 200 characters."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_RULE_TEXT)


RuleId = Annotated[str, Path(min_length=1, max_length=64)]


class GoalIn(BaseModel):
    """A long-term goal in plain words ("get fit", "learn to cook", "see more of my friends";
    "just let me scroll" removes every goal); at most 120 characters."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_GOAL_TEXT)


def _access(engine: Any, principal: Any, user_id: int) -> None:
    principal.require_user_access(user_id, parent_of=parent_links(engine, principal))
    engine.require_user(user_id)


@router.post(
    "/{user_id}/mood",
    status_code=status.HTTP_201_CREATED,
    responses=errors(
        413, 422, why={413: "the prompt is too long", 422: "the prompt could not be read"}
    ),
)
def create_mood(
    user_id: UserId,
    body: MoodIn,
    engine: EngineDep,
    principal: PrincipalDep,
    background: BackgroundTasks,
) -> dict[str, Any]:
    """Set a mood; the next page follows it. The response shows how the prompt was understood
    (facets, exclusions, energy, expiry, warnings) so it can be corrected."""
    _access(engine, principal, user_id)
    moods = engine.steering.moods
    try:
        mood = moods.create(
            user_id, body.text, scope=body.scope, strength=body.strength, expand=False
        )
    except MoodTooLongError as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=str(exc)) from exc
    except MoodParseError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    # The mood is stored; its expansion starts once the answer is sent (a page asking first
    # starts it itself), so the answer does not wait for the CPU the expansion takes.
    background.add_task(moods.expand, mood.mood_id)
    return mood.to_dict()


@router.get("/{user_id}/mood")
def list_moods(user_id: UserId, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """The user's active moods."""
    _access(engine, principal, user_id)
    return {"moods": [m.to_dict() for m in engine.steering.moods.list(user_id)]}


@router.delete(
    "/{user_id}/mood/{mood_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(404, why={404: "unknown user, or no such active mood"}),
)
def delete_mood(
    user_id: UserId,
    mood_id: Annotated[str, Path(max_length=64)],
    engine: EngineDep,
    principal: PrincipalDep,
) -> None:
    """Stop a mood (404 when the user has no such active mood)."""
    _access(engine, principal, user_id)
    engine.steering.moods.delete(user_id, mood_id)


@router.get("/{user_id}/controls")
def get_controls(user_id: UserId, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """The user's standing controls."""
    _access(engine, principal, user_id)
    return engine.steering.controls.get(user_id).model_dump()


@router.put("/{user_id}/controls", responses=errors(422))
def put_controls(
    user_id: UserId, body: ControlsIn, engine: EngineDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Change standing controls (fields left out keep their value); applies to the next page."""
    _access(engine, principal, user_id)
    svc = engine.steering
    try:
        ctrl = svc.controls.update(user_id, body.model_dump(exclude_unset=True))
    except ControlsError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    # Warm the cache so the next page pays nothing (negations are scored whole).
    for t in ctrl.never_show:
        svc.concepts.negated(t)
    for t in (*ctrl.more_of, *ctrl.less_of):
        svc.concepts.scores(t)
    return ctrl.model_dump()


@router.get("/{user_id}/controls/rules")
def list_rules(user_id: UserId, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """The user's standing rules, each with how it was understood."""
    _access(engine, principal, user_id)
    return {"rules": [r.to_dict() for r in engine.steering.rules.list(user_id)]}


@router.post(
    "/{user_id}/controls/rules",
    status_code=status.HTTP_201_CREATED,
    responses=errors(422, why={422: "the sentence could not be used; the detail says why"}),
)
def create_rule(
    user_id: UserId, body: RuleIn, engine: EngineDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Save a sentence as a standing rule; every page follows it until it is deleted. The
    response shows how it was understood (never / only / less / more, creator, time window)."""
    _access(engine, principal, user_id)
    try:
        rule = engine.steering.rules.create(user_id, body.text)
    except RuleError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    return rule.to_dict()


@router.put(
    "/{user_id}/controls/rules/{rule_id}",
    responses=errors(
        404, 422, why={404: "unknown user, or no such rule", 422: "the new sentence is unusable"}
    ),
)
def put_rule(
    user_id: UserId, rule_id: RuleId, body: RuleIn, engine: EngineDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Change a rule's sentence (an unusable one leaves the old rule in place)."""
    _access(engine, principal, user_id)
    try:
        rule = engine.steering.rules.update(user_id, rule_id, body.text)
    except RuleError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    return rule.to_dict()


@router.delete(
    "/{user_id}/controls/rules/{rule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(404, why={404: "unknown user, or no such rule"}),
)
def delete_rule(
    user_id: UserId, rule_id: RuleId, engine: EngineDep, principal: PrincipalDep
) -> None:
    """Delete a rule; the next page no longer follows it."""
    _access(engine, principal, user_id)
    engine.steering.rules.delete(user_id, rule_id)


def _goals_body(engine: Any, user_id: int) -> dict[str, Any]:
    goals = engine.steering.goals
    return {"goals": goals.progress(user_id), "page_share": goals.settings.share}


@router.get("/{user_id}/goals")
def list_goals(user_id: UserId, engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """The person's goals, how each was understood, and progress since it was set (clips
    watched toward it; for a friends goal also the friends seen)."""
    _access(engine, principal, user_id)
    return _goals_body(engine, user_id)


@router.post(
    "/{user_id}/goals",
    status_code=status.HTTP_201_CREATED,
    responses=errors(422, why={422: "the sentence could not be used, or three goals already"}),
)
def set_goal(
    user_id: UserId, body: GoalIn, engine: EngineDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Set a goal; pages serve it in at most ``page_share`` of their places. "Just let me
    scroll" is a choice too: it removes every goal (``goal`` is then null)."""
    _access(engine, principal, user_id)
    try:
        goal = engine.steering.goals.set(user_id, body.text)
    except GoalError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    return {"goal": goal.to_dict() if goal else None, **_goals_body(engine, user_id)}


@router.delete(
    "/{user_id}/goals/{goal_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(404, why={404: "unknown user, or no such goal"}),
)
def delete_goal(
    user_id: UserId, goal_id: RuleId, engine: EngineDep, principal: PrincipalDep
) -> None:
    """Remove a goal; the next page no longer serves it."""
    _access(engine, principal, user_id)
    engine.steering.goals.remove(user_id, goal_id)


@router.get("/{user_id}/interests")
def get_interests(
    user_id: UserId,
    engine: EngineDep,
    principal: PrincipalDep,
    k: Annotated[int, Query(ge=1, le=100, description="how many interests")] = 20,
) -> dict[str, Any]:
    """What the engine thinks the user likes, strongest first, with the user's rules, and the
    data controls that shaped it (signals off are not used: with interaction history off
    nothing is inferred and only the user's own rules are listed)."""
    _access(engine, principal, user_id)
    svc = engine.steering
    interests = InterestService(engine.state, svc.controls, lambda: engine.embedder)
    gate = engine.data_controls.gate(user_id)
    listed = interests.list(user_id, k=k, signals=gate)
    return {
        "interests": [i.to_dict() for i in listed],
        "data_controls": engine.data_controls.describe(user_id),
        "inferred_from": _inferred_from(gate.off()),
    }


def _inferred_from(off: list[str]) -> str:
    """One sentence saying what the interests were read from, as the data controls allow."""
    if "interaction_history" in off:
        return (
            "nothing: your interaction history is off in your data controls, so only the "
            "rules you set yourself are listed"
        )
    if "watch_time" in off:
        return "your likes, shares, comments, remixes and follows (watch time is off)"
    return "your likes, shares, comments, remixes, follows and how long you watch"


@router.post("/{user_id}/interests/{topic}", responses=errors(422))
def mark_interest(
    user_id: UserId,
    topic: Annotated[str, Path(min_length=1, max_length=80)],
    action: Literal["more", "less", "never"],
    engine: EngineDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    """More, less or never of an interest (a standing control); applies to the next page."""
    _access(engine, principal, user_id)
    svc = engine.steering
    interests = InterestService(engine.state, svc.controls, lambda: engine.embedder)
    try:
        ctrl = interests.mark(user_id, topic, action)
    except SteeringError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    svc.concepts.scores(topic.lower())
    return {"topic": topic.lower(), "action": action, "controls": ctrl.model_dump()}


@router.get(
    "/{user_id}/why-not/{clip_id}", responses=errors(404, why={404: "unknown user or clip"})
)
def get_why_not(
    user_id: UserId,
    clip_id: Annotated[int, Path(ge=0, le=2**62)],
    engine: EngineDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    """Why a clip is not on the user's next page: the filter and rule, or the stage."""
    _access(engine, principal, user_id)
    engine.require_user(user_id)
    return why_not(engine.products[HOME], engine.state, user_id, clip_id)
