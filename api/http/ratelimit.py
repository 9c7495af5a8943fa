"""Token buckets: per API key, each key may make ``rate`` requests a second on average, with
bursts up to ``burst`` (:class:`RateLimiter`); per client address, failed authentications
(:class:`FailedAuthThrottle`). A request over either limit is answered 429 with
``Retry-After``.

One process keeps its buckets in memory. Several workers (or servers) share theirs in Redis or
in the store's PostgreSQL database (:mod:`storage.buckets`), chosen by
``STEERFEED_API_LIMITS_URL`` (:func:`shared_buckets_url`), so a key gets its rate and a guesser
its tries once per deployment, not once per worker. When the shared buckets do not answer, each
worker limits with its own buckets until they do (:class:`FailOpenBuckets`): degraded to the
per-process limits, never an error to the caller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from api.http.settings import ApiSettings
from pipelines.serving.telemetry.metrics import SHARED_LIMIT_FALLBACKS
from storage.buckets import BucketsUnavailableError, Mode, SharedBuckets, open_buckets
from storage.factory import is_postgres_url
from storage.store import Store

logger = logging.getLogger(__name__)

#: Seconds a worker limits alone after the shared buckets failed, before it asks them again
#: (so a down backend costs one timeout per worker every few seconds, not one per request).
SHARED_RETRY_S = 5.0


class LimitsConfigError(ValueError):
    """``limits_url`` names something this deployment cannot use."""


def shared_buckets_url(limits_url: str, store_url: str | None) -> str | None:
    """Where the buckets of a deployment live: a URL for :func:`storage.buckets.open_buckets`,
    or ``None`` for this process's memory.

    ``memory``: this process. ``store``: the store's database, which must be PostgreSQL.
    ``auto`` (the default): the store's database when it is PostgreSQL (the store that several
    workers and servers can share), else this process (DuckDB serves one process). A
    ``redis://``, ``rediss://`` or ``postgresql://`` URL: that server.
    """
    if limits_url == "memory":
        return None
    if limits_url in ("auto", "store"):
        if store_url is not None and is_postgres_url(store_url):
            return store_url
        if limits_url == "store":
            msg = (
                "STEERFEED_API_LIMITS_URL=store needs a PostgreSQL store "
                "(STEERFEED_DB_URL=postgresql://...); with the embedded DuckDB store use "
                "'memory' (one process) or a redis:// URL"
            )
            raise LimitsConfigError(msg)
        return None
    return limits_url


class FailOpenBuckets:
    """Shared buckets that answer ``None`` instead of failing.

    After a call fails, every call answers ``None`` for :data:`SHARED_RETRY_S` seconds without
    asking; the caller then uses its own buckets. Each failure is logged once and each call
    answered ``None`` is counted in ``steerfeed_shared_limit_fallbacks_total``.
    """

    def __init__(self, shared: SharedBuckets, *, retry_s: float = SHARED_RETRY_S) -> None:
        self.shared = shared
        self.retry_s = retry_s
        self._down_until = 0.0

    def call(
        self, bucket: str, rate: float, burst: float, mode: Mode, *, limit: str
    ) -> float | None:
        """:meth:`storage.buckets.SharedBuckets.call`, or ``None`` while the backend is down
        (``limit`` labels the metric: ``rate`` or ``auth_fail``)."""
        if self._down_until and time.monotonic() < self._down_until:
            SHARED_LIMIT_FALLBACKS.labels(limit=limit).inc()
            return None
        try:
            wait = self.shared.call(bucket, rate, burst, mode)
        except BucketsUnavailableError as exc:
            self._down_until = time.monotonic() + self.retry_s
            logger.warning(
                "shared limit buckets failed (%s); this worker limits with its own buckets "
                "for %.0f s",
                exc,
                self.retry_s,
            )
            SHARED_LIMIT_FALLBACKS.labels(limit=limit).inc()
            return None
        self._down_until = 0.0
        return wait

    def close(self) -> None:
        """Close the backend's connections."""
        self.shared.close()


class RateLimiter:
    """Token buckets keyed by API key id, with a rate per role.

    Parameters
    ----------
    settings
        ``rate_limit_per_s`` (0 turns limiting off), ``rate_limit_burst`` and the per-role
        overrides ``rate_limit_roles``.
    clock
        Seconds, monotonic (tests pass their own), for the buckets in memory.
    shared
        Buckets shared with the deployment's other workers (``None``: this process's
        memory, which is also the fallback while they do not answer).
    """

    def __init__(
        self,
        settings: ApiSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        shared: FailOpenBuckets | None = None,
    ) -> None:
        self.settings = settings
        self.shared = shared
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
        if self.shared is not None:
            wait = self.shared.call(f"key:{key_id}", rate, burst, "take", limit="rate")
            if wait is not None:
                return wait
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
        Seconds, monotonic (tests pass their own), for the buckets in memory.
    shared
        Buckets shared with the deployment's other workers (``None``: this process's memory,
        which is also the fallback while they do not answer). Shared buckets are bounded by
        expiry instead of ``auth_fail_addresses``: one is dropped once it is full again.
    """

    def __init__(
        self,
        settings: ApiSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        shared: FailOpenBuckets | None = None,
    ) -> None:
        self.shared = shared
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
        if self.shared is not None:
            wait = self.shared.call(
                f"auth-fail:{address}", self.rate, self.burst, "peek", limit="auth_fail"
            )
            if wait is not None:
                return wait
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
        if self.shared is not None:
            drained = self.shared.call(
                f"auth-fail:{address}", self.rate, self.burst, "drain", limit="auth_fail"
            )
            if drained is not None:
                return
        now = self._clock()
        with self._lock:
            tokens = self._tokens(address, now)
            self._buckets[address] = (max(tokens - 1.0, 0.0), now)
            self._buckets.move_to_end(address)
            while len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)

    def __len__(self) -> int:
        """Addresses tracked in this process's memory."""
        with self._lock:
            return len(self._buckets)


def limits_for(
    settings: ApiSettings, store: Store
) -> tuple[RateLimiter, FailedAuthThrottle, FailOpenBuckets | None]:
    """The rate limiter and failed-authentication throttle of a server on ``store``, and the
    shared buckets they use (``None``: this process's memory; close them at shutdown).
    ``settings.limits_url`` chooses (:func:`shared_buckets_url`)."""
    store_url = getattr(store, "url", None) if store.dialect == "postgres" else None
    url = shared_buckets_url(settings.limits_url, store_url)
    if url is None:
        return RateLimiter(settings), FailedAuthThrottle(settings), None
    shared = FailOpenBuckets(open_buckets(url))
    logger.info("rate limits and failed-auth throttle shared through %s", url.split("://")[0])
    return (
        RateLimiter(settings, shared=shared),
        FailedAuthThrottle(settings, shared=shared),
        shared,
    )
