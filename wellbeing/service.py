"""Wellbeing services held by an engine (``engine.wellbeing``): the governor, surveys, the
satisfaction model in serving, and parental links.

The request path only reads memory: effective settings are cached per user (dropped when
changed), usage comes from :class:`~wellbeing.usage.UsageTracker` (seeded once from the event
log, then fed each committed event batch), and survey history/activity are cached.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl

from ranking.state import FeedState
from storage.store import Store
from wellbeing.cards import GovernorCard, StopCard, SurveyCard, SurveyScale
from wellbeing.errors import GovernorSettingsError
from wellbeing.governor import (
    GovernorDecision,
    GovernorSettings,
    Usage,
    apply_overrides,
    check_self_change,
    defaults_for,
    effective_settings,
    evaluate,
    to_utc,
)
from wellbeing.intensity import ClipIntensity
from wellbeing.repository import SurveyHistory, WeeklyActivity, WellbeingRepository
from wellbeing.satisfaction import VERSION_PREFIX, SatisfactionModel, SatisfactionModelError
from wellbeing.settings import WellbeingSettings
from wellbeing.surveys import (
    QUESTIONS,
    SamplingPolicy,
    SurveyDraw,
    UniformSource,
    should_survey,
)
from wellbeing.usage import UsageTracker

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Profile:
    """What the governor needs to know about a user."""

    timezone: str
    is_teen: bool
    age_band: str


@dataclass(frozen=True, slots=True)
class GovernorView:
    """A user's governor decision for one request, with the settings and usage behind it."""

    decision: GovernorDecision
    settings: GovernorSettings
    usage: Usage

    @property
    def generated_left(self) -> int | None:
        """AI-generated clips still allowed today (``None``: no cap)."""
        cap = self.settings.max_generated_per_day
        return None if cap is None else max(0, cap - self.usage.generated_today)

    def page_card(self) -> GovernorCard:
        """The ``governor`` block every page carries (with the break message when one is
        suggested)."""
        d = self.decision
        return GovernorCard(
            state=d.state,
            minutes_used=round(d.minutes_used, 2),
            minutes_left=None if d.minutes_left is None else round(d.minutes_left, 2),
            reason=d.reason,
            taper=round(d.taper, 3),
            resumes_at=d.resumes_at,
            pages_this_session=self.usage.pages_this_session,
            message=BREAK_MESSAGE if d.state == "break_suggested" else None,
        )


STOP_MESSAGES = {
    "daily_limit": "You have reached today's time limit. The feed will be back tomorrow.",
    "session_limit": "That's the end of this session. Take a break and come back later.",
    "sleep_hours": "It's sleep time. The feed will be back in the morning.",
    "page_cap": "That's all for this session: continuous scrolling is off.",
}
BREAK_MESSAGE = "You've been watching for a while. Time for a short break?"


def stop_card(view: GovernorView) -> StopCard:
    """The stop card shown instead of clips when a limit is reached."""
    d = view.decision
    reason = d.reason or "daily_limit"
    return StopCard(
        reason=reason,
        message=STOP_MESSAGES.get(reason, STOP_MESSAGES["daily_limit"]),
        resumes_at=d.resumes_at,
    )


class GovernorService:
    """Effective settings, usage and decisions; who may change the settings.

    Parameters
    ----------
    repo
        The wellbeing tables.
    state
        The serving state (profiles: timezone, teen flag, age band).
    tracker
        Usage per user, kept in memory.
    """

    def __init__(self, repo: WellbeingRepository, state: FeedState, tracker: UsageTracker) -> None:
        self.repo = repo
        self.state = state
        self.tracker = tracker
        self._overrides: dict[int, dict[str, dict[str, Any]]] = {}
        self._overrides_complete = False  # after warm(): a user absent has no overrides
        # Events in the store at the last warm() and committed through this engine since: a
        # refresh re-reads only when the store holds others (another writer, an erasure).
        self._events_at_warm: int | None = None
        self.events_applied = 0
        self._lock = threading.Lock()
        self.tracker.timezone_of = lambda user_id: self.profile(user_id).timezone

    def warm(self, now: datetime) -> dict[str, int]:
        """Load every user's overrides and usage in two queries, so no user's first page
        reads the store; return how many users hold each."""
        events = self._event_count()
        overrides = self.repo.all_overrides()
        with self._lock:
            self._overrides = overrides
            self._overrides_complete = True
            self._events_at_warm, self.events_applied = events, 0
        timezones = {u: self.profile(u).timezone for u in list(self.state.profiles.by_user)}
        active = self.tracker.seed_all(timezones, now_utc=now)
        return {"users_with_overrides": len(overrides), "users_with_recent_usage": active}

    def _event_count(self) -> int:
        return int(self.repo.store.scalar("SELECT count(*) FROM events") or 0)

    def others_wrote(self) -> bool:
        """Whether the event log changed other than through this engine since :meth:`warm`."""
        if self._events_at_warm is None:
            return True
        return self._event_count() != self._events_at_warm + self.events_applied

    def profile(self, user_id: int) -> Profile:
        """Timezone, teen flag and age band of a user (defaults for unknown users)."""
        p = self.state.profiles.by_user.get(user_id) or {}
        band = str(p.get("age_band") or "25-34")
        return Profile(
            timezone=str(p.get("timezone") or "UTC"),
            is_teen=bool(p.get("is_teen")) or band in ("13-15", "16-17"),
            age_band=band,
        )

    def overrides(self, user_id: int) -> dict[str, dict[str, Any]]:
        """Stored overrides by who set them (cached)."""
        with self._lock:
            hit = self._overrides.get(user_id)
            if hit is None and self._overrides_complete:
                return {}
        if hit is None:
            hit = self.repo.overrides(user_id)
            with self._lock:
                self._overrides[user_id] = hit
        return hit

    def defaults(self, user_id: int) -> GovernorSettings:
        """Age-based defaults of a user."""
        p = self.profile(user_id)
        return defaults_for(p.age_band, p.is_teen)

    def settings_for(self, user_id: int) -> GovernorSettings:
        """Settings that bind the user when serving (a teen's looser choice is ignored)."""
        ov = self.overrides(user_id)
        try:
            return effective_settings(
                self.defaults(user_id),
                ov.get("user"),
                ov.get("parent"),
                is_teen=self.profile(user_id).is_teen,
                on_looser="ignore",
            )
        except GovernorSettingsError:
            logger.exception("stored governor settings of a user are invalid; defaults used")
            return self.defaults(user_id)

    def ceiling_for(self, user_id: int) -> GovernorSettings:
        """What a parent allows: defaults with the parent's overrides (a teen's upper bound)."""
        return apply_overrides(
            self.defaults(user_id), self.overrides(user_id).get("parent"), source="parent overrides"
        )

    def view(self, user_id: int, now: datetime) -> GovernorView:
        """The governor's decision for a request by ``user_id`` at server time ``now``."""
        settings = self.settings_for(user_id)
        tz = self.profile(user_id).timezone
        usage = self.tracker.usage(user_id, now_utc=now, timezone=tz)
        decision = evaluate(settings, usage, now_utc=now, timezone=tz)
        return GovernorView(decision, settings, usage)

    def update_own(self, user_id: int, changes: dict[str, Any]) -> GovernorSettings:
        """Apply a user's change to their own settings and return the effective settings.

        Raises
        ------
        GovernorSettingsError
            Unknown option or invalid value.
        GovernorPermissionError
            A teen loosening a limit (the message lists what and says a parent can change it).
        """
        ov = self.overrides(user_id)
        stored = ov.get("user") or {}
        merged = {**stored, **changes}
        defaults, parent = self.defaults(user_id), ov.get("parent")
        if self.profile(user_id).is_teen:
            # Only what this request changes is checked against the parent's ceiling: an
            # earlier choice of the teen's that a parent has since made stricter (stored 45,
            # parent 30) is ignored when serving and must not block tightening anything else.
            ceiling = apply_overrides(defaults, parent, source="parent overrides")
            asked = dict(changes)
            for half, other in (("sleep_start", "sleep_end"), ("sleep_end", "sleep_start")):
                if half in changes and other not in changes:  # a window is checked whole
                    asked[other] = stored.get(other, getattr(ceiling, other))
            check_self_change(
                ceiling, apply_overrides(ceiling, asked, source="user overrides"), is_teen=True
            )
        result = effective_settings(
            defaults, merged, parent, is_teen=self.profile(user_id).is_teen, on_looser="ignore"
        )
        self.repo.save_overrides(user_id, "user", merged, updated_by=user_id)
        self._forget(user_id)
        # Field names only: limits are personal settings.
        logger.info("governor settings changed set_by=user fields=%s", sorted(changes))
        return result

    def update_by_parent(
        self, child_id: int, changes: dict[str, Any], *, parent_id: int
    ) -> GovernorSettings:
        """Apply a parent's change to a child's limits; return the child's effective settings.

        Raises
        ------
        GovernorSettingsError
            Unknown option or invalid value.
        """
        ov = self.overrides(child_id)
        merged = {**(ov.get("parent") or {}), **changes}
        apply_overrides(self.defaults(child_id), merged, source="parent overrides")
        self.repo.save_overrides(child_id, "parent", merged, updated_by=parent_id)
        self._forget(child_id)
        logger.info("governor settings changed set_by=parent fields=%s", sorted(changes))
        return self.settings_for(child_id)

    def reload_user(self, user_id: int) -> None:
        """Reread a user's stored overrides (another worker changed them)."""
        self._forget(user_id)

    def _forget(self, user_id: int) -> None:
        if self._overrides_complete:  # read the user's new overrides now (a write path)
            fresh = self.repo.overrides(user_id)
            with self._lock:
                self._overrides[user_id] = fresh
            return
        with self._lock:
            self._overrides.pop(user_id, None)

    def record_page(self, user_id: int, request_id: str, now: datetime, n_generated: int) -> None:
        """Count a served page (and its AI-generated clips) at once, before its impressions
        are committed, so paging fast cannot slip past a page or generated-clip cap."""
        tz = self.profile(user_id).timezone
        if user_id not in self.tracker:
            self.tracker.usage(user_id, now_utc=now, timezone=tz)
        self.tracker.record_page(user_id, request_id, now, n_generated)

    def on_events(self, events: pl.DataFrame) -> None:
        """Feed committed events to the usage tracker (an engine event listener).

        Plain Python over the batch's columns: a few small polars operations per batch cost
        more than the loop (each one waits on polars' thread pool)."""
        with self._lock:
            self.events_applied += events.height
        if events.height == 0 or "user_id" not in events.columns:
            return
        cols = events.columns
        types = events["event_type"].to_list()
        picked = [i for i, t in enumerate(types) if t == "view" or t == "impression"]
        if not picked:
            return
        users = events["user_id"].to_list()
        picked = [i for i in picked if users[i] in self.tracker]
        if not picked:
            return
        now = datetime.now(UTC).replace(tzinfo=None)
        received = events["received_at"].to_list() if "received_at" in cols else None
        at = {i: (received[i] if received is not None else None) or now for i in picked}
        picked.sort(key=at.__getitem__)  # stable: in receive order, ties in batch order
        if "watch_s" in cols:
            watch = events["watch_s"].to_list()
            for i in picked:
                if types[i] == "view":
                    self.tracker.record_view(int(users[i]), float(watch[i] or 0.0), at[i])
        if "request_id" not in cols:
            return
        requests = events["request_id"].to_list()
        imps = [i for i in picked if types[i] == "impression" and requests[i] is not None]
        if not imps:
            return
        items: list[Any] = events["item_id"].to_list() if "item_id" in cols else [None] * len(types)
        rows = self.state.catalogue.rows([-1 if items[i] is None else int(items[i]) for i in imps])
        generated = self.state.catalogue.generated[rows] & (rows >= 0)
        pages: dict[tuple[int, str], list[Any]] = {}
        for i, gen in zip(imps, generated.tolist(), strict=True):
            page = pages.setdefault((int(users[i]), str(requests[i])), [at[i], 0])
            page[1] += int(gen)  # the first impression in receive order holds the earliest time
        for (u, rid), (first_at, n_gen) in pages.items():
            self.tracker.record_page(u, rid, first_at, n_gen)


class SurveyService:
    """Draws survey cards for pages and records answers, dismissals and non-responses.

    Parameters
    ----------
    repo
        The wellbeing tables.
    settings
        Rates, spacing and caches.
    rng
        Uniform draws (seed it to replay a run).
    """

    def __init__(
        self,
        repo: WellbeingRepository,
        settings: WellbeingSettings,
        *,
        rng: UniformSource | None = None,
    ) -> None:
        self.repo = repo
        self.settings = settings
        self.policy = SamplingPolicy(
            rate_per_week=settings.survey_rate_per_week,
            min_spacing_hours=settings.survey_min_spacing_hours,
        )
        # Survey sampling, not secrets: a seedable generator is what the tests need.
        self.rng: UniformSource = rng or random.Random()  # noqa: S311
        self.pages_per_week_override: float | None = None
        self._activity: dict[int, tuple[float, float, float, datetime | None]] = {}
        self._history: dict[int, Any] = {}
        self._complete = False  # after warm(): a user absent was never shown a survey
        self.warmed_at: float | None = None
        self._lock = threading.Lock()

    def warm(self, now: datetime) -> dict[str, int]:
        """Load every user's survey history and weekly activity in two queries (a user's
        first page then reads no SQL); return how many users hold each."""
        history = self.repo.survey_histories()
        activity = self.repo.weekly_activities(now)
        mono = time.monotonic()
        cached = {u: self._activity_entry(act, mono) for u, act in activity.items()}
        with self._lock:
            self._history = history
            self._activity = cached
            self._complete = True
            self.warmed_at = mono
        return {"users_with_surveys": len(history), "users_with_activity": len(cached)}

    def maybe_draw(
        self,
        user_id: int,
        now: datetime,
        *,
        request_id: str,
        session_id: str,
    ) -> SurveyCard | None:
        """Run the sampling policy for one page; log and return the card when drawn."""
        hist = self._history_for(user_id)
        minutes, pages, tenure = self._activity_for(user_id, now)
        draw = should_survey(
            self.policy,
            user_id=user_id,
            now_utc=now,
            last_survey_at=hist.last_survey_at,
            last_periodic_at=hist.last_periodic_at,
            activity_minutes_week=minutes,
            pages_this_week_expected=pages,
            rng=self.rng,
            tenure_days=tenure,
        )
        if draw is None:
            return None
        survey_id = uuid.uuid4().hex
        self.repo.insert_prompt(survey_id, draw, request_id=request_id, session_id=session_id)
        fresh = self.repo.survey_history(user_id) if self._complete else None
        with self._lock:
            if fresh is not None:
                self._history[user_id] = fresh
            else:
                self._history.pop(user_id, None)
        return self.card(survey_id, draw)

    @staticmethod
    def card(survey_id: str, draw: SurveyDraw) -> SurveyCard:
        """The ``survey`` card a page carries."""
        q = QUESTIONS[draw.question_key]
        return SurveyCard(
            survey_id=survey_id,
            question_key=q.key,
            question=q.text,
            kind=q.kind,
            scale=SurveyScale(
                min=q.scale_min,
                max=q.scale_max,
                labels={str(k): v for k, v in q.labels.items()},
            ),
        )

    def answer(self, survey_id: str, value: int, *, now: datetime) -> dict[str, Any]:
        """Record an answer (validated against the question's scale)."""
        return self.repo.respond(survey_id, status="answered", answer=value, at=now)

    def dismiss(self, survey_id: str, *, now: datetime) -> dict[str, Any]:
        """Record a dismissal (a non-response the user chose)."""
        return self.repo.respond(survey_id, status="dismissed", answer=None, at=now)

    def expire(self, now: datetime) -> int:
        """Log cards left unanswered past the response window as non-responses."""
        return self.repo.expire_prompts(now, self.settings.survey_response_window_hours)

    def reload_user(self, user_id: int) -> None:
        """Reread a user's survey history (another worker showed or closed a survey), so the
        spacing between surveys holds whichever worker serves the next page."""
        fresh = self.repo.survey_history(user_id)
        with self._lock:
            self._history[user_id] = fresh

    def _history_for(self, user_id: int) -> Any:
        with self._lock:
            hit = self._history.get(user_id)
            if hit is None and self._complete:
                return SurveyHistory(None, {})
        if hit is None:
            hit = self.repo.survey_history(user_id)
            with self._lock:
                self._history[user_id] = hit
        return hit

    def _activity_entry(
        self, act: WeeklyActivity, read_at: float
    ) -> tuple[float, float, float, datetime | None]:
        """The cached form of a week's activity: (read at, minutes, expected pages, created);
        a user with no pages yet is expected to load the default number."""
        pages = float(act.pages) if act.pages > 0 else self.settings.default_pages_per_week
        return (read_at, act.minutes, pages, act.created_at)

    def _activity_for(self, user_id: int, now: datetime) -> tuple[float, float, float | None]:
        """Weekly minutes, expected pages this week and tenure in days (cached)."""
        mono = time.monotonic()
        with self._lock:
            hit = self._activity.get(user_id)
        if hit is None or mono - hit[0] > self.settings.activity_cache_s:
            hit = self._activity_entry(self.repo.weekly_activity(user_id, now), mono)
            with self._lock:
                self._activity[user_id] = hit
        pages = self.pages_per_week_override or hit[2]
        created = hit[3]
        tenure = (to_utc(now) - to_utc(created)).total_seconds() / 86400.0 if created else None
        return hit[1], pages, tenure


class SatisfactionService:
    """The satisfaction model used in serving (loaded lazily from the store, swapped by the job).

    Parameters
    ----------
    repo
        Where fitted models are stored.
    """

    def __init__(self, repo: WellbeingRepository) -> None:
        self.repo = repo
        self._models: dict[str, SatisfactionModel | None] = {}
        self._lock = threading.Lock()

    def _get(self, kind: str) -> SatisfactionModel | None:
        with self._lock:
            if kind not in self._models:
                self._models[kind] = None
                latest = self.repo.latest_model(prefix=VERSION_PREFIX[kind])
                if latest is not None:
                    try:
                        self._models[kind] = SatisfactionModel.from_params(
                            latest[1], version=latest[0]
                        )
                    except SatisfactionModelError:
                        logger.exception("stored satisfaction model %s unusable", latest[0])
            return self._models[kind]

    @property
    def model(self) -> SatisfactionModel | None:
        """The newest in-the-moment model, or ``None`` before the job first fitted one."""
        return self._get("in_moment")

    @property
    def long_term(self) -> SatisfactionModel | None:
        """The newest long-term model (the surrogate for the six-month answer), or ``None``."""
        return self._get("long_term")

    def reload(self) -> None:
        """Read the newest models from the store again on next use (another worker's job
        fitted one)."""
        with self._lock:
            self._models.clear()

    def set_model(self, model: SatisfactionModel | None, *, kind: str = "in_moment") -> None:
        """Serve ``model`` (of ``kind``) from the next request on."""
        with self._lock:
            self._models[kind] = model


@dataclass
class WellbeingServices:
    """Everything the wellbeing package keeps on an engine (``engine.wellbeing``)."""

    settings: WellbeingSettings
    repo: WellbeingRepository
    governor: GovernorService
    surveys: SurveyService
    satisfaction: SatisfactionService
    intensity: ClipIntensity
    extra: dict[str, Any] = field(default_factory=dict)

    def warm(self, now: datetime | None = None) -> dict[str, Any]:
        """Load every user's governor overrides and usage, survey history and weekly activity
        from the store at once (four scans instead of four queries on each user's first page:
        at 20M events those took ~300 ms per user); return counts and seconds."""
        t0 = time.perf_counter()
        at = now or datetime.now(UTC)
        out: dict[str, Any] = {**self.governor.warm(at), **self.surveys.warm(at)}
        out["seconds"] = round(time.perf_counter() - t0, 2)
        logger.info("wellbeing warmed: %s", out)
        return out

    def refresh(self, now: datetime | None = None) -> dict[str, Any]:
        """Re-read, in bulk, what is older than its allowed age: usage past
        ``usage_max_age_s`` when the event log holds events this engine did not commit
        (viewing served by other replicas; one process alone keeps usage exact in memory, and
        a re-read costs ~4 s at 20M events), weekly activity past half of
        ``activity_cache_s`` (before any user's entry expires into a per-user query)."""
        at = now or datetime.now(UTC)
        mono = time.monotonic()
        out: dict[str, Any] = {}
        seeded = self.governor.tracker.seeded_all_at
        if seeded is None or (
            mono - seeded >= self.settings.usage_max_age_s and self.governor.others_wrote()
        ):
            out.update(self.governor.warm(at))
        warmed = self.surveys.warmed_at
        if warmed is None or mono - warmed >= self.settings.activity_cache_s / 2:
            out.update(self.surveys.warm(at))
        return out

    def children_of(self, parent_id: int) -> list[int]:
        """Teens linked to a parent account."""
        return self.repo.children_of(parent_id)


def build_services(
    store: Store, state: FeedState, settings: WellbeingSettings
) -> WellbeingServices:
    """Create the services for one engine (cheap: nothing is loaded until first use)."""
    s = settings
    repo = WellbeingRepository(store)
    return WellbeingServices(
        settings=s,
        repo=repo,
        governor=GovernorService(repo, state, UsageTracker(store, max_age_s=s.usage_max_age_s)),
        surveys=SurveyService(repo, s),
        satisfaction=SatisfactionService(repo),
        intensity=ClipIntensity(state),
    )
