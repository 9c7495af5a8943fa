"""Token buckets: per API key, each key may make ``rate`` requests a second on average, with
bursts up to ``burst`` (:class:`RateLimiter`); per client address, failed authentications
(:class:`FailedAuthThrottle`). A request over either limit is answered 429 with
``Retry-After``."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
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


class FailedAuthThrottle:
    """Failed authentications per client address, as token buckets.

    Each address may fail ``auth_fail_burst`` times, then one more time every
    ``1 / auth_fail_per_s`` seconds. While its bucket is empty every request from the address
    that needs a key is answered 429 with ``Retry-After`` before any key is looked up, so
    guessing keys (API or dashboard login) costs the guesser time and the server nothing.
    At most ``auth_fail_addresses`` addresses are tracked (least recently failing evicted).

    Parameters
    ----------
    settings
        ``auth_fail_per_s`` (0 turns throttling off), ``auth_fail_burst``,
        ``auth_fail_addresses``.
    clock
        Seconds, monotonic (tests pass their own).
    """

    def __init__(
        self, settings: ApiSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = float(settings.auth_fail_per_s)
        self.burst = float(max(settings.auth_fail_burst, 1))
        self.max_addresses = settings.auth_fail_addresses
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _tokens(self, address: str, now: float) -> float:
        tokens, last = self._buckets.get(address, (self.burst, now))
        return min(self.burst, tokens + (now - last) * self.rate)

    def wait(self, address: str) -> float:
        """Seconds until ``address`` may try a key again (0 when it may now)."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            if address not in self._buckets:
                return 0.0
            tokens = self._tokens(address, now)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def failed(self, address: str) -> None:
        """Count one failed authentication of ``address``."""
        if self.rate <= 0:
            return
        now = self._clock()
        with self._lock:
            tokens = self._tokens(address, now)
            self._buckets[address] = (max(tokens - 1.0, 0.0), now)
            self._buckets.move_to_end(address)
            while len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._buckets)
