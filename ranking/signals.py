"""Data controls per signal: which of a person's signals one request may use.

A person can turn off individual signals ("you can turn this off in Data Controls"). The
stored choices live in :mod:`ranking.data_controls`; a query hydrator
(:class:`~ranking.query_hydrators.data_controls.DataControlsQueryHydrator`) resolves them once
per request into a :class:`SignalGate` on ``query.context.signals``, and every component that
uses a signal reads the gate, so there is one place per signal, not scattered checks:

======================  ==============================================================
signal                  what reads neutral values when it is off
======================  ==============================================================
``location``            ``same_city`` (0) and the local boost; no city is used at all
``watch_time``          long views leave the taste vector, ``user_author_affinity`` and
                        the interests (likes, shares, follows ... still count)
``friends_activity``    ``friends_engaged``, ``friend_cameo``, ``remix_of_friend`` (0);
                        the friends-of-friends source is off
``interaction_history`` ``user_clip_cosine``, ``user_author_affinity`` (0); the taste-vector
                        and collaborative sources are off; no interests are inferred
``satisfaction_model``  the satisfaction head leaves scores unchanged
======================  ==============================================================

A city is the finest location the engine ever holds: :func:`normalise_city` refuses
coordinates, numbers (postcodes, street numbers) and anything longer than a city's name.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from ranking.errors import RankingError


class Signal(StrEnum):
    """One signal a person can turn off."""

    LOCATION = "location"
    WATCH_TIME = "watch_time"
    FRIENDS_ACTIVITY = "friends_activity"
    INTERACTION_HISTORY = "interaction_history"
    SATISFACTION_MODEL = "satisfaction_model"


#: What each signal is used for, in the words the person reads in their data controls.
SIGNAL_USES: dict[Signal, str] = {
    Signal.LOCATION: "your city (never finer) favours clips made near you",
    Signal.WATCH_TIME: "how long you watch clips shapes your taste profile",
    Signal.FRIENDS_ACTIVITY: "what your friends watch, remix and appear in, and who they follow",
    Signal.INTERACTION_HISTORY: "what you liked, shared and watched shapes your taste profile",
    Signal.SATISFACTION_MODEL: "a model of what leaves sessions feeling well spent",
}

#: Defaults for adults: every signal on (location acts only once a city is known).
ADULT_DEFAULTS: dict[Signal, bool] = dict.fromkeys(Signal, True)
#: Defaults for teens: location off (a teen may turn it on); the rest as for adults.
TEEN_DEFAULTS: dict[Signal, bool] = {**ADULT_DEFAULTS, Signal.LOCATION: False}

MAX_CITY_CHARS = 60
MAX_CITY_WORDS = 5
# Letters (any script), single separators between words: "são paulo", "st. louis",
# "l'aquila", "winston-salem".
_CITY = re.compile(r"^[^\W\d_]+(?:[ '\-.]{1,2}[^\W\d_]+)*\.?$")


class CityError(RankingError, ValueError):
    """A location that is not a plain city name (the message says what to send).

    A ``ValueError`` too, so a request model's validator turns it into a 422."""


def normalise_city(text: str) -> str:
    """The canonical form of a city name: NFKC, lower case, single spaces.

    Raises
    ------
    CityError
        Coordinates, digits (postcodes, street numbers), symbols, or a text too long to be a
        city's name: the engine never holds a location finer than a city.
    """
    s = " ".join(unicodedata.normalize("NFKC", str(text)).split()).casefold()
    if not s:
        msg = "the city is empty; send a city name such as 'lisbon', or null to clear it"
        raise CityError(msg)
    if any(ch.isdigit() for ch in s):
        msg = (
            "a location must be a city name, never coordinates, a postcode or an address "
            "(digits are refused); send a city name such as 'lisbon'"
        )
        raise CityError(msg)
    if len(s) > MAX_CITY_CHARS or len(s.split()) > MAX_CITY_WORDS or not _CITY.match(s):
        msg = (
            f"{s[:24]!r} is not a city name: use letters, spaces, hyphens or apostrophes, "
            f"at most {MAX_CITY_CHARS} characters and {MAX_CITY_WORDS} words"
        )
        raise CityError(msg)
    return s


@dataclass(frozen=True)
class SignalGate:
    """Which signals one request may use, and the city it may use (``None``: none).

    The default (no data-controls hydrator ran: a replay, a unit test) allows every signal and
    knows no city, which is how the engine behaved before data controls existed.
    """

    location: bool = True
    watch_time: bool = True
    friends_activity: bool = True
    interaction_history: bool = True
    satisfaction_model: bool = True
    city: str | None = None
    """The normalised city for this request (the client's, else the profile's); ``None`` when
    location is off or no city is known."""

    def allows(self, signal: Signal) -> bool:
        """Whether ``signal`` may be used for this request."""
        return bool(getattr(self, signal.value))

    @property
    def local_city(self) -> str | None:
        """The city local clips are matched against (``None``: location off or unknown)."""
        return self.city if self.location else None

    def off(self) -> list[str]:
        """Names of the signals turned off, in declaration order."""
        return [s.value for s in Signal if not self.allows(s)]
