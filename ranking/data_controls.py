"""A person's data controls: the signals they turned on or off, and their city.

Stored one row per person in ``data_controls`` (migration 12): a nullable boolean per
:class:`~ranking.signals.Signal` (NULL: the default for the person, see
:data:`~ranking.signals.ADULT_DEFAULTS` and :data:`~ranking.signals.TEEN_DEFAULTS`) and a
nullable ``city``. A person back on every default has no row at all. The rows are held in
memory (read once at start-up, written through), so the request path never queries the store;
an erasure deletes the row (its ``user_id`` column is found by the generic erasure) and
:meth:`DataControlsService.forget` drops the cached copy.
"""

from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ranking.errors import RankingError
from ranking.locality import ClipCities
from ranking.signals import (
    ADULT_DEFAULTS,
    SIGNAL_USES,
    TEEN_DEFAULTS,
    CityError,
    Signal,
    SignalGate,
    normalise_city,
)
from ranking.state import FeedState
from storage.store import Store

logger = logging.getLogger(__name__)

TABLE = "data_controls"


class DataControlsError(RankingError):
    """Invalid data controls (the message says what to fix and lists the valid values)."""


class DataControls(BaseModel):
    """One person's stored choices (``None``: the default for them)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    location: bool | None = None
    watch_time: bool | None = None
    friends_activity: bool | None = None
    interaction_history: bool | None = None
    satisfaction_model: bool | None = None
    city: str | None = None

    def is_default(self) -> bool:
        """Whether nothing is stored beyond the defaults."""
        return all(v is None for v in self.model_dump().values())


FIELDS: tuple[str, ...] = tuple(DataControls.model_fields)
_COLUMNS = ", ".join(FIELDS)


class DataControlsService:
    """Read, change and resolve data controls.

    Parameters
    ----------
    store
        Where the rows are persisted.
    state
        The serving state (whether a person is a teen, for the defaults).
    cities
        The catalogue's clip cities (the bounded set a city is chosen from).
    """

    def __init__(self, store: Store, state: FeedState, cities: ClipCities) -> None:
        self.store = store
        self.state = state
        self.cities = cities
        self._lock = threading.Lock()
        self._held: dict[int, DataControls] = {}
        rows = store.query(f"SELECT user_id, {_COLUMNS} FROM {TABLE}")  # noqa: S608
        for row in rows.iter_rows(named=True):
            uid = int(row.pop("user_id"))
            self._held[uid] = DataControls.model_validate(row)

    # -- reading --------------------------------------------------------------------------------
    def get(self, user_id: int) -> DataControls:
        """The person's stored choices (all ``None`` when they never changed one)."""
        return self._held.get(user_id) or DataControls()

    def defaults(self, user_id: int) -> dict[Signal, bool]:
        """The defaults that apply to the person (teens have location off)."""
        profile = self.state.profiles.by_user.get(user_id) or {}
        return TEEN_DEFAULTS if profile.get("is_teen") else ADULT_DEFAULTS

    def gate(self, user_id: int, *, client_city: str | None = None) -> SignalGate:
        """What one request of the person may use.

        ``client_city`` (already resolved, :meth:`resolve_city`) replaces the profile's city
        for this request; neither is used while location is off.
        """
        stored = self.get(user_id)
        defaults = self.defaults(user_id)
        on = {
            s.value: (
                defaults[s] if getattr(stored, s.value) is None else bool(getattr(stored, s.value))
            )
            for s in Signal
        }
        city = (client_city or stored.city) if on[Signal.LOCATION.value] else None
        return SignalGate(**on, city=city)

    def describe(self, user_id: int, *, client_city: str | None = None) -> dict[str, Any]:
        """The person's data controls as they read them: each signal on or off, whether that
        is their choice or the default, and what it is used for; the city and where it came
        from."""
        stored = self.get(user_id)
        defaults = self.defaults(user_id)
        gate = self.gate(user_id, client_city=client_city)
        signals = {
            s.value: {
                "on": gate.allows(s),
                "default": defaults[s],
                "set_by": "default" if getattr(stored, s.value) is None else "you",
                "used_for": SIGNAL_USES[s],
            }
            for s in Signal
        }
        if client_city and gate.location:
            source = "this request"
        elif stored.city:
            source = "your profile"
        else:
            source = None
        return {
            "signals": signals,
            "city": stored.city,
            "city_in_use": gate.local_city,
            "city_source": source if gate.local_city else None,
            "off": gate.off(),
        }

    def resolve_city(self, text: str) -> str:
        """A city name, normalised and checked against the catalogue's cities.

        Raises
        ------
        DataControlsError
            Coordinates, digits, a text that is not a city name, or a city no clip comes from
            (the message suggests the closest known names).
        """
        try:
            city = normalise_city(text)
        except CityError as exc:
            raise DataControlsError(str(exc)) from exc
        known = self.cities.known()
        if city not in known:
            close = difflib.get_close_matches(city, sorted(known), n=3, cutoff=0.6)
            hint = (
                f"did you mean {', '.join(repr(c) for c in close)}?"
                if close
                else f"{len(known)} cities are known"
                + (f", e.g. {', '.join(repr(c) for c in sorted(known)[:5])}" if known else "")
            )
            msg = f"unknown city {city!r}: a city must be one clips come from; {hint}"
            raise DataControlsError(msg)
        return city

    # -- writing --------------------------------------------------------------------------------
    def update(self, user_id: int, changes: Mapping[str, Any]) -> DataControls:
        """Merge ``changes`` into the person's choices and persist them.

        A signal set to ``None`` goes back to its default; ``city: None`` forgets the city.

        Raises
        ------
        DataControlsError
            An unknown field, a value that is not ``true``/``false``/``null``, or a bad city.
        """
        unknown = sorted(set(changes) - set(FIELDS))
        if unknown:
            msg = f"unknown data control(s) {unknown}; valid: {', '.join(FIELDS)}"
            raise DataControlsError(msg)
        merged = self.get(user_id).model_dump()
        merged.update(changes)
        if isinstance(merged.get("city"), str):
            merged["city"] = self.resolve_city(merged["city"])
        try:
            controls = DataControls.model_validate(merged)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(x) for x in err.get("loc", ()))
            msg = f"invalid data control {field!r}: {err['msg']} (send true, false or null)"
            raise DataControlsError(msg) from exc
        self._save(user_id, controls)
        return controls

    def _save(self, user_id: int, controls: DataControls) -> None:
        values = controls.model_dump()
        with self._lock:
            with self.store.write() as cur:
                cur.execute(f"DELETE FROM {TABLE} WHERE user_id = ?", [user_id])  # noqa: S608
                if not controls.is_default():
                    marks = ", ".join("?" for _ in FIELDS)
                    cur.execute(
                        f"INSERT INTO {TABLE} (user_id, {_COLUMNS}, updated_at) "  # noqa: S608
                        f"VALUES (?, {marks}, ?)",
                        [user_id, *values.values(), datetime.now(UTC).replace(tzinfo=None)],
                    )
            if controls.is_default():
                self._held.pop(user_id, None)
            else:
                self._held[user_id] = controls
        # Which fields are set, never their values (a city is personal).
        logger.info("data controls saved set=%d", sum(v is not None for v in values.values()))

    def reload_user(self, user_id: int) -> None:
        """Reread a person's row from the store (another worker changed it)."""
        rows = self.store.query(
            f"SELECT {_COLUMNS} FROM {TABLE} WHERE user_id = ?",  # noqa: S608
            [user_id],
        )
        with self._lock:
            if rows.height:
                self._held[user_id] = DataControls.model_validate(rows.row(0, named=True))
            else:
                self._held.pop(user_id, None)

    def forget(self, user_id: int) -> None:
        """Drop the cached row of an erased person (the store's row is erased with them)."""
        with self._lock:
            self._held.pop(user_id, None)
