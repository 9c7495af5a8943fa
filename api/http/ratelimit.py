"""Per-key token buckets: each API key may make ``rate`` requests a second on average, with
bursts up to ``burst``; a request over the limit is answered 429 with ``Retry-After``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from api.http.settings import ApiSettings


class RateLimiter:
    """Token buckets keyed by API key id, with a rate per role.

    Parameters
    ----------
    settings
        ``rate_limit_per_s`` (0 turns limiting off), ``rate_limit_burst`` and the per-role
        overrides ``rate_limit_roles``.
    clock
        Seconds, monotonic (tests pass their own).
    """

    def __init__(
        self, settings: ApiSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key_id -> (tokens, last time)
        self._lock = threading.Lock()

    def _rate(self, role: str) -> float:
        return float(self.settings.rate_limit_roles.get(role, self.settings.rate_limit_per_s))

    def acquire(self, key_id: str, role: str) -> float:
        """Take one token for ``key_id``; return 0 when granted, else seconds until one frees."""
        rate = self._rate(role)
        if rate <= 0:
            return 0.0
        burst = float(max(self.settings.rate_limit_burst, 1))
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (burst, now))
            tokens = min(burst, tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / rate
