"""Profiles: the users the store holds and their cached profile and settings.

Rebuilt from the store's ``users`` table; updated by the write path (:meth:`add_users`,
:meth:`set_user_settings`), not by the event log.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import polars as pl

from storage.store import Store

_DEFAULT_PROFILE: dict[str, Any] = {"age_band": "25-34", "is_teen": False, "timezone": "UTC"}


class Profiles:
    """``users`` (every known user id) and ``by_user`` (age band, teen flag, time zone and
    settings of each user)."""

    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock
        self.users: set[int] = set()
        self.by_user: dict[int, dict[str, Any]] = {}

    def load(self, store: Store) -> None:
        """Add the store's users (on an empty part this rebuilds it)."""
        self.add_users(
            store.query("SELECT user_id, age_band, is_teen, timezone, settings FROM users")
        )

    def add_users(self, users: pl.DataFrame) -> None:
        """Record users the store now holds (``user_id`` plus optional profile columns)."""
        with self.lock:
            for row in users.iter_rows(named=True):
                uid = int(row["user_id"])
                self.users.add(uid)
                settings = row.get("settings") or "{}"
                self.by_user[uid] = {
                    "age_band": row.get("age_band") or "25-34",
                    "is_teen": bool(row.get("is_teen") or False),
                    "timezone": row.get("timezone") or "UTC",
                    "settings": json.loads(settings) if isinstance(settings, str) else settings,
                }

    def set_user_settings(self, user_id: int, settings: dict[str, Any]) -> None:
        """Replace a user's cached settings after the store committed them."""
        with self.lock:
            self.by_user.setdefault(user_id, dict(_DEFAULT_PROFILE))["settings"] = settings

    def forget_user(self, user_id: int) -> None:
        """Drop the user and their profile."""
        with self.lock:
            self.users.discard(user_id)
            self.by_user.pop(user_id, None)
