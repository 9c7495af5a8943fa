"""The time-limit governor: settings, who may change them, and the per-request decision.

Pure building blocks, no I/O: :class:`GovernorSettings` (validated limits), :func:`defaults_for`
(age-based defaults), :func:`effective_settings` (defaults, a user's and a parent's overrides
combined), :func:`check_self_change` (a teen may only tighten their own limits) and
:func:`evaluate` (turn a :class:`Usage` snapshot into a :class:`GovernorDecision` for the feed).

All clock arithmetic is done on aware UTC instants; wall-clock rules (the local day, sleep hours)
are evaluated in the user's IANA timezone with :mod:`zoneinfo`, so DST transitions are handled by
the timezone database rather than by fixed offsets.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from wellbeing.errors import GovernorPermissionError, GovernorSettingsError

logger = logging.getLogger(__name__)

GovernorState = Literal["ok", "break_suggested", "limit_reached"]
GovernorReason = Literal[
    "daily_limit", "session_limit", "sleep_hours", "page_cap", "break_reminder"
]
LooserPolicy = Literal["raise", "ignore"]

TEEN_AGE_BANDS: frozenset[str] = frozenset({"13-15", "16-17"})
"""Age bands that get teen defaults even when ``is_teen`` was not set (the safer reading)."""

TEEN_DAILY_LIMIT_MIN = 60
TEEN_BREAK_EVERY_MIN = 30
TEEN_SLEEP_START = "22:00"
TEEN_SLEEP_END = "07:00"

# Limits where a smaller number is stricter and ``None`` means "no limit" (the loosest).
NUMERIC_LIMITS: tuple[str, ...] = (
    "daily_limit_min",
    "session_limit_min",
    "break_every_min",
    "max_pages_per_session",
    "max_generated_per_day",
)

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_MINUTES_PER_DAY = 24 * 60


class GovernorSettings(BaseModel):
    """A user's time-limit settings; every limit is optional (``None`` = not limited).

    Parameters
    ----------
    daily_limit_min
        Minutes of watching per local day (midnight to midnight in the user's timezone).
    session_limit_min
        Minutes of watching per session (a run of activity without a long gap).
    break_every_min
        Suggest a break after this many minutes without one.
    sleep_start, sleep_end
        Sleep hours as 24-hour ``'HH:MM'`` local times; set both or neither. A window may cross
        midnight (``'22:00'`` to ``'07:00'``). The start is inclusive, the end exclusive.
    max_pages_per_session
        Pages per session before the feed stops (continuous scrolling off).
    max_generated_per_day
        Impressions of AI-generated clips per local day; ``0`` shows none.
    personalized
        Whether ranking may use the user's history (``False`` is the stricter choice).
    taper_start_fraction
        Fraction of the tightest budget at which the ranking starts tapering (in ``(0, 1]``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    daily_limit_min: int | None = Field(default=None, ge=1, le=_MINUTES_PER_DAY)
    session_limit_min: int | None = Field(default=None, ge=1, le=_MINUTES_PER_DAY)
    break_every_min: int | None = Field(default=None, ge=1, le=_MINUTES_PER_DAY)
    sleep_start: str | None = None
    sleep_end: str | None = None
    max_pages_per_session: int | None = Field(default=None, ge=1)
    max_generated_per_day: int | None = Field(default=None, ge=0)
    personalized: bool = True
    taper_start_fraction: float = Field(default=0.75, gt=0.0, le=1.0)

    @model_validator(mode="before")
    @classmethod
    def _only_known_options(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(str(k) for k in data if k not in cls.model_fields)
            if unknown:
                valid = ", ".join(cls.model_fields)
                msg = f"unknown governor setting(s) {unknown}; valid: {valid}"
                raise ValueError(msg)
        return data

    @field_validator("sleep_start", "sleep_end")
    @classmethod
    def _is_hhmm(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not _HHMM.match(value):
            msg = f"{info.field_name} must be a 24-hour 'HH:MM' time such as '22:00', got {value!r}"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _sleep_hours_are_a_pair(self) -> GovernorSettings:
        if (self.sleep_start is None) != (self.sleep_end is None):
            msg = (
                "sleep_start and sleep_end must be set together or both left unset, "
                f"got sleep_start={self.sleep_start!r}, sleep_end={self.sleep_end!r}"
            )
            raise ValueError(msg)
        if self.sleep_start is not None and self.sleep_start == self.sleep_end:
            msg = f"sleep_start and sleep_end must differ, both are {self.sleep_start!r}"
            raise ValueError(msg)
        return self

    @property
    def sleep_window(self) -> tuple[int, int] | None:
        """Sleep hours as ``(start, end)`` minutes after local midnight, or ``None``."""
        if self.sleep_start is None or self.sleep_end is None:
            return None
        return _minute_of_day(self.sleep_start), _minute_of_day(self.sleep_end)


@dataclass(frozen=True, slots=True)
class Usage:
    """How much a user has used the feed, as of one instant (see :mod:`wellbeing.usage`).

    Attributes
    ----------
    seconds_today
        Seconds watched since local midnight in the user's timezone.
    session_seconds
        Seconds watched in the current session (0 when no session is open).
    seconds_since_break
        Seconds watched since the last break (a gap of at least five minutes).
    pages_this_session
        Distinct feed pages served in the current session.
    generated_today
        Impressions of AI-generated clips since local midnight.
    """

    seconds_today: float = 0.0
    session_seconds: float = 0.0
    seconds_since_break: float = 0.0
    pages_this_session: int = 0
    generated_today: int = 0


@dataclass(frozen=True, slots=True)
class GovernorDecision:
    """What the feed should do for one request.

    Attributes
    ----------
    state
        ``'ok'``, ``'break_suggested'`` (show a break card, keep serving) or ``'limit_reached'``
        (show the stop card instead of more clips).
    minutes_used
        Minutes watched today (local day).
    minutes_left
        Minutes until the nearest time budget runs out (daily, session, or the start of sleep
        hours; 0 inside them), or ``None`` when no time budget is set.
    reason
        Why the state is not ``'ok'``: ``'sleep_hours'``, ``'daily_limit'``,
        ``'session_limit'``, ``'page_cap'`` (checked in that order) or ``'break_reminder'``.
    taper
        In ``[0, 1]``: 0 is no taper; it rises linearly from ``taper_start_fraction`` of the
        tightest used budget to 1 at the limit (and is 1 whenever a limit is reached).
    allow_generated
        Whether AI-generated clips may still be shown today.
    resumes_at
        For ``'sleep_hours'`` the end of sleep hours, for ``'daily_limit'`` the next local
        midnight (aware UTC); ``None`` otherwise (a session limit clears after a session gap).
    """

    state: GovernorState
    minutes_used: float
    minutes_left: float | None
    reason: GovernorReason | None
    taper: float
    allow_generated: bool
    resumes_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (``resumes_at`` as an ISO-8601 string)."""
        out = asdict(self)
        out["resumes_at"] = self.resumes_at.isoformat() if self.resumes_at is not None else None
        return out


# -- time helpers -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def resolve_timezone(name: str | None) -> tzinfo:
    """Return the IANA timezone ``name``; an unknown or empty name falls back to UTC.

    The fallback is logged as a warning once per distinct name (results are cached).
    """
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            logger.warning("unknown timezone %r (%s); using UTC", name, exc)
    else:
        logger.warning("no timezone given; using UTC")
    return UTC


def to_utc(moment: datetime) -> datetime:
    """Return ``moment`` as an aware UTC datetime; a naive one is taken to be UTC already.

    The store keeps naive UTC timestamps, so naive values are never interpreted as local time.
    """
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def local_day_start(now_utc: datetime, tz: tzinfo) -> datetime:
    """Return the aware-UTC instant of the last local midnight at or before ``now_utc``.

    The local day is 23 or 25 hours long on DST transition days; this follows the tz database.
    """
    local = to_utc(now_utc).astimezone(tz)
    return datetime.combine(local.date(), time(0, 0), tzinfo=tz).astimezone(UTC)


def next_local_time(now_utc: datetime, hhmm: str, tz: tzinfo) -> datetime:
    """Return the first instant (aware UTC) after ``now_utc`` when local wall time is ``hhmm``.

    A wall time skipped by a spring-forward transition resolves to the instant just after the
    jump (Python's ``fold=0`` rule).
    """
    now = to_utc(now_utc)
    day = now.astimezone(tz).date()
    wall = time(_minute_of_day(hhmm) // 60, _minute_of_day(hhmm) % 60)
    for offset in range(3):
        candidate = datetime.combine(day + timedelta(days=offset), wall, tzinfo=tz).astimezone(UTC)
        if candidate > now:
            return candidate
    msg = f"no local {hhmm} within three days of {now.isoformat()}"  # unreachable in practice
    raise GovernorSettingsError(msg)


def in_window(minute: float, start: int, end: int) -> bool:
    """Whether ``minute`` after local midnight lies in ``[start, end)``, which may wrap midnight."""
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end


def _minute_of_day(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _window_minutes(settings: GovernorSettings) -> frozenset[int]:
    window = settings.sleep_window
    if window is None:
        return frozenset()
    start, end = window
    return frozenset(m for m in range(_MINUTES_PER_DAY) if in_window(m, start, end))


# -- defaults and overrides ---------------------------------------------------------------------


def defaults_for(age_band: str, is_teen: bool) -> GovernorSettings:
    """Return the default settings for an account.

    Teens (``is_teen`` or a teen age band) get a 60-minute daily limit, a break reminder every
    30 minutes and sleep hours from 22:00 to 07:00 local time; adults get no limits.
    """
    if is_teen or age_band in TEEN_AGE_BANDS:
        return GovernorSettings(
            daily_limit_min=TEEN_DAILY_LIMIT_MIN,
            break_every_min=TEEN_BREAK_EVERY_MIN,
            sleep_start=TEEN_SLEEP_START,
            sleep_end=TEEN_SLEEP_END,
        )
    return GovernorSettings()


def apply_overrides(
    base: GovernorSettings, overrides: Mapping[str, Any] | None, *, source: str = "overrides"
) -> GovernorSettings:
    """Return ``base`` with the keys of ``overrides`` replaced, validated again.

    ``None`` values switch a limit off (``{"sleep_start": None, "sleep_end": None}``).

    Raises
    ------
    GovernorSettingsError
        An unknown option or an invalid value; ``source`` names who sent it in the message.
    """
    if not overrides:
        return base
    data = base.model_dump()
    data.update(overrides)
    try:
        return GovernorSettings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        msg = f"invalid {source}: {problems}"
        raise GovernorSettingsError(msg) from exc


def looser_changes(current: GovernorSettings, requested: GovernorSettings) -> list[str]:
    """List, as ``'field old -> new'``, every way ``requested`` is looser than ``current``.

    A numeric limit is looser when raised or removed; sleep hours are looser unless the new
    window covers every minute of the old one; turning personalization back on and a later
    taper start are looser. Anything else (equal or stricter) is not listed.
    """
    changes: list[str] = []
    for name in NUMERIC_LIMITS:
        old, new = getattr(current, name), getattr(requested, name)
        if old is not None and (new is None or new > old):
            changes.append(f"{name} {old} -> {_off(new)}")
    if not _window_minutes(current) <= _window_minutes(requested):
        changes.append(f"sleep hours {_sleep_text(current)} -> {_sleep_text(requested)}")
    if requested.personalized and not current.personalized:
        changes.append("personalized False -> True")
    if requested.taper_start_fraction > current.taper_start_fraction:
        changes.append(
            f"taper_start_fraction {current.taper_start_fraction} -> "
            f"{requested.taper_start_fraction}"
        )
    return changes


def check_self_change(
    current: GovernorSettings, requested: GovernorSettings, is_teen: bool
) -> None:
    """Refuse a teen's change of their own settings that loosens any limit.

    Parameters
    ----------
    current
        The settings that bind the teen: their defaults with a parent's overrides applied
        (``effective_settings(defaults, None, parent_overrides, is_teen=True)``), not the teen's
        own earlier choice, so a teen can always return to what their parent allows.
    requested
        The settings the teen asks for.
    is_teen
        Adults may change anything; the check only applies to teens.

    Raises
    ------
    GovernorPermissionError
        The change loosens at least one limit; the message lists each one.
    """
    if not is_teen:
        return
    changes = looser_changes(current, requested)
    if changes:
        msg = (
            "a teen account can only make its own limits stricter; "
            f"refused: {', '.join(changes)} (a parent can change these)"
        )
        raise GovernorPermissionError(msg)


def effective_settings(
    defaults: GovernorSettings,
    user_overrides: Mapping[str, Any] | None,
    parent_overrides: Mapping[str, Any] | None,
    *,
    is_teen: bool = False,
    on_looser: LooserPolicy = "raise",
) -> GovernorSettings:
    """Combine defaults, the user's own overrides and a parent's overrides.

    Adults: defaults, then the user's overrides, then the parent's (the parent wins on every key
    they set). Teens: the parent's overrides replace the defaults and form the ceiling; the teen's
    own overrides apply only where they are at least as strict as that ceiling.

    Parameters
    ----------
    defaults
        Usually :func:`defaults_for` the account.
    user_overrides, parent_overrides
        Partial settings (keys of :class:`GovernorSettings`) as stored in the user's settings,
        or ``None`` when there are none.
    is_teen
        Whether the teen rule applies.
    on_looser
        What to do with a teen override looser than the ceiling: ``'raise'`` (the default; use it
        when saving a change) or ``'ignore'`` (keep the ceiling's value and log a warning; use it
        when serving, because a parent may tighten a limit after the teen stored a choice).

    Raises
    ------
    GovernorSettingsError
        Malformed overrides.
    GovernorPermissionError
        ``on_looser='raise'`` and a teen override loosens a limit.
    """
    if not is_teen:
        with_user = apply_overrides(defaults, user_overrides, source="user overrides")
        return apply_overrides(with_user, parent_overrides, source="parent overrides")
    ceiling = apply_overrides(defaults, parent_overrides, source="parent overrides")
    requested = apply_overrides(ceiling, user_overrides, source="user overrides")
    if on_looser == "raise":
        check_self_change(ceiling, requested, is_teen=True)
        return requested
    changes = looser_changes(ceiling, requested)
    if not changes:
        return requested
    # How many, not which values: the logs carry no personal settings.
    logger.warning("ignoring %d teen override(s) looser than the ceiling", len(changes))
    return _keep_stricter(ceiling, requested)


def _keep_stricter(ceiling: GovernorSettings, requested: GovernorSettings) -> GovernorSettings:
    data = requested.model_dump()
    for name in NUMERIC_LIMITS:
        old, new = getattr(ceiling, name), getattr(requested, name)
        if old is not None and (new is None or new > old):
            data[name] = old
    if not _window_minutes(ceiling) <= _window_minutes(requested):
        data["sleep_start"], data["sleep_end"] = ceiling.sleep_start, ceiling.sleep_end
    data["personalized"] = ceiling.personalized and requested.personalized
    data["taper_start_fraction"] = min(ceiling.taper_start_fraction, requested.taper_start_fraction)
    return GovernorSettings.model_validate(data)


def _off(value: object) -> str:
    return "off" if value is None else str(value)


def _sleep_text(settings: GovernorSettings) -> str:
    if settings.sleep_start is None:
        return "off"
    return f"{settings.sleep_start}-{settings.sleep_end}"


# -- the decision -------------------------------------------------------------------------------


def budget_fraction(settings: GovernorSettings, usage: Usage) -> float | None:
    """Return the largest used fraction of the daily, session and page budgets (``None``: unset)."""
    fractions: list[float] = []
    if settings.daily_limit_min is not None:
        fractions.append(usage.seconds_today / (settings.daily_limit_min * 60))
    if settings.session_limit_min is not None:
        fractions.append(usage.session_seconds / (settings.session_limit_min * 60))
    if settings.max_pages_per_session is not None:
        fractions.append(usage.pages_this_session / settings.max_pages_per_session)
    return max(fractions) if fractions else None


def taper_for(settings: GovernorSettings, usage: Usage) -> float:
    """Return the taper in ``[0, 1]``: linear from ``taper_start_fraction`` to 1 at the limit."""
    used = budget_fraction(settings, usage)
    if used is None:
        return 0.0
    if used >= 1.0:
        return 1.0
    start = settings.taper_start_fraction
    if start >= 1.0:
        return 0.0
    return min(1.0, max(0.0, (used - start) / (1.0 - start)))


def evaluate(
    settings: GovernorSettings, usage: Usage, *, now_utc: datetime, timezone: str
) -> GovernorDecision:
    """Decide what the feed does for one request.

    Parameters
    ----------
    settings
        The user's effective settings.
    usage
        Usage as of ``now_utc`` (from :func:`wellbeing.usage.compute_usage` or the tracker).
    now_utc
        The server's current time; naive values are taken as UTC.
    timezone
        The user's IANA timezone for sleep hours and the local day; an unknown one falls back
        to UTC with a logged warning.

    Returns
    -------
    GovernorDecision
        ``limit_reached`` when sleep hours are on or the daily, session or page cap is used up
        (in that order of precedence), else ``break_suggested`` when a break is due, else ``ok``.
    """
    tz = resolve_timezone(timezone)
    now = to_utc(now_utc)
    local = now.astimezone(tz)

    seconds_left: list[float] = []
    if settings.daily_limit_min is not None:
        seconds_left.append(settings.daily_limit_min * 60 - usage.seconds_today)
    if settings.session_limit_min is not None:
        seconds_left.append(settings.session_limit_min * 60 - usage.session_seconds)

    asleep = False
    window = settings.sleep_window
    if window is not None and settings.sleep_start is not None:
        minute = local.hour * 60 + local.minute + local.second / 60
        asleep = in_window(minute, *window)
        if asleep:
            seconds_left.append(0.0)
        else:
            seconds_left.append(
                (next_local_time(now, settings.sleep_start, tz) - now).total_seconds()
            )
    minutes_left = max(0.0, min(seconds_left)) / 60 if seconds_left else None

    reason: GovernorReason | None = None
    resumes_at: datetime | None = None
    if asleep and settings.sleep_end is not None:
        reason, resumes_at = "sleep_hours", next_local_time(now, settings.sleep_end, tz)
    elif (
        settings.daily_limit_min is not None
        and usage.seconds_today >= settings.daily_limit_min * 60
    ):
        reason = "daily_limit"
        resumes_at = next_local_time(now, "00:00", tz)
    elif (
        settings.session_limit_min is not None
        and usage.session_seconds >= settings.session_limit_min * 60
    ):
        reason = "session_limit"
    elif (
        settings.max_pages_per_session is not None
        and usage.pages_this_session >= settings.max_pages_per_session
    ):
        reason = "page_cap"

    state: GovernorState = "ok"
    if reason is not None:
        state = "limit_reached"
    elif (
        settings.break_every_min is not None
        and usage.seconds_since_break >= settings.break_every_min * 60
    ):
        state, reason = "break_suggested", "break_reminder"

    allow_generated = (
        settings.max_generated_per_day is None
        or usage.generated_today < settings.max_generated_per_day
    )
    decision = GovernorDecision(
        state=state,
        minutes_used=usage.seconds_today / 60,
        minutes_left=minutes_left,
        reason=reason,
        taper=1.0 if state == "limit_reached" else taper_for(settings, usage),
        allow_generated=allow_generated,
        resumes_at=resumes_at,
    )
    # Not the minutes, limits or local time: they are the user's settings and usage.
    logger.debug(
        "governor state=%s reason=%s taper=%.2f", decision.state, decision.reason, decision.taper
    )
    return decision
