"""Token buckets shared by every worker of a deployment: in Redis or in the store (PostgreSQL).

The API's per-key rate limits and failed-authentication throttle keep one bucket per key or
client address. In one process they live in memory (``api/http/ratelimit.py``); with several
workers each worker would grant the whole rate, so they live here instead, behind
:class:`SharedBuckets`, opened from a URL by :func:`open_buckets`:

- ``redis://host:6379/0`` (or ``rediss://``): :class:`RedisBuckets`, one Lua script per call,
  which Redis runs atomically. An idle bucket expires once it would be full again.
- ``postgresql://...``: :class:`PostgresBuckets`, one ``INSERT ... ON CONFLICT DO UPDATE ...
  RETURNING`` per call on table ``rate_buckets`` (migration 18, ``UNLOGGED``: buckets are not
  worth a WAL write and may be lost in a crash). The row lock makes concurrent calls on one
  bucket queue; full buckets are deleted now and then.

Every bucket holds up to ``burst`` tokens and gains ``rate`` a second. Times are the server's
clock (Redis ``TIME``, PostgreSQL ``statement_timestamp()``), so workers on machines whose
clocks differ agree; tests may pass their own clock instead. A backend that cannot answer
raises :class:`BucketsUnavailableError` quickly (sub-second timeouts): the caller decides what
to do without it (the API falls back to its per-process buckets).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any, Literal, Protocol

import psycopg
import redis
from psycopg_pool import ConnectionPool

from storage.errors import StorageError

logger = logging.getLogger(__name__)

#: What one call does to a bucket: ``take`` one token when there is one (else leave it and say
#: how long to wait), ``drain`` one token whatever is left (never below 0), ``peek`` only read.
Mode = Literal["take", "drain", "peek"]

#: Seconds one call may take before the backend counts as unreachable.
CALL_TIMEOUT_S = 0.25
#: Seconds an idle bucket is kept after it would be full again (a full bucket equals no bucket).
_IDLE_MARGIN_S = 10.0


class BucketsUnavailableError(StorageError):
    """The shared bucket backend did not answer (down, unreachable, too slow or misconfigured)."""


class SharedBuckets(Protocol):
    """Token buckets that several processes share."""

    url: str

    def call(self, bucket: str, rate: float, burst: float, mode: Mode = "take") -> float:
        """Apply ``mode`` to ``bucket`` (``rate`` > 0 tokens a second, at most ``burst``);
        return 0 when a token was there, else the seconds until one is. ``drain`` and
        ``peek`` return the wait after the call."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


# One atomic step on a bucket stored as a hash {t: tokens, at: seconds}. Numbers travel as
# strings: Redis would truncate a Lua number returned as is to an integer.
_REDIS_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local mode = ARGV[3]
local now = tonumber(ARGV[4])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local tokens = burst
local held = redis.call('HMGET', KEYS[1], 't', 'at')
if held[1] then
  tokens = math.min(burst, tonumber(held[1]) + math.max(0, now - tonumber(held[2])) * rate)
end
local wait = 0
if tokens < 1 then wait = (1 - tokens) / rate end
if mode == 'peek' then return string.format('%.6f', wait) end
if mode == 'drain' then
  tokens = math.max(tokens - 1, 0)
  if tokens < 1 then wait = (1 - tokens) / rate else wait = 0 end
elseif tokens >= 1 then
  tokens = tokens - 1
end
redis.call('HSET', KEYS[1], 't', string.format('%.6f', tokens), 'at', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(((burst - tokens) / rate + tonumber(ARGV[5])) * 1000))
return string.format('%.6f', wait)
"""


class RedisBuckets:
    """Buckets in Redis: one script call (a single round trip, atomic) per :meth:`call`.

    Parameters
    ----------
    url
        ``redis://host:port/db`` or ``rediss://...``.
    namespace
        Prefix of every key (``<namespace>:<bucket>``), so deployments or tests can share a
        server.
    clock
        Seconds; ``None`` (the default) uses the Redis server's clock.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "steerfeed",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self._clock = clock
        self._client: redis.Redis = redis.Redis.from_url(
            url,
            socket_timeout=CALL_TIMEOUT_S,
            socket_connect_timeout=CALL_TIMEOUT_S,
            health_check_interval=30,
        )
        self._script = self._client.register_script(_REDIS_SCRIPT)

    def call(self, bucket: str, rate: float, burst: float, mode: Mode = "take") -> float:
        """See :meth:`SharedBuckets.call`."""
        now = self._clock() if self._clock is not None else -1.0
        try:
            out = self._script(
                keys=[f"{self.namespace}:{bucket}"],
                args=[repr(float(rate)), repr(float(burst)), mode, repr(now), _IDLE_MARGIN_S],
            )
        except redis.RedisError as exc:
            msg = f"shared buckets at {_redacted(self.url)} did not answer: {exc}"
            raise BucketsUnavailableError(msg) from exc
        return float(out)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


# This call's values, typed once (the rest of the statement reads them from ``excluded``).
_NOW = "coalesce(%(now)s::float8, extract(epoch FROM statement_timestamp())::float8)"
# The bucket's new state from its old row (b) and this call's values (excluded): refill, then
# take. SET expressions all read the old row, so "refilled" is written out where it is needed.
_REFILLED = "least(excluded.burst, b.tokens + greatest(0, excluded.at_s - b.at_s) * excluded.rate)"
_PG_UPSERT = f"""
INSERT INTO rate_buckets AS b (bucket, tokens, at_s, rate, burst, wait_s)
VALUES (%(bucket)s, %(burst)s::float8 - 1, {_NOW}, %(rate)s::float8, %(burst)s::float8,
        CASE WHEN %(drain)s::bool AND %(burst)s::float8 < 2
             THEN (2 - %(burst)s::float8) / %(rate)s::float8 ELSE 0 END)
ON CONFLICT (bucket) DO UPDATE SET
  tokens = CASE WHEN %(drain)s::bool THEN greatest({_REFILLED} - 1, 0)
                WHEN {_REFILLED} >= 1 THEN {_REFILLED} - 1
                ELSE {_REFILLED} END,
  wait_s = CASE WHEN %(drain)s::bool
                THEN greatest(1 - greatest({_REFILLED} - 1, 0), 0) / excluded.rate
                WHEN {_REFILLED} >= 1 THEN 0
                ELSE (1 - {_REFILLED}) / excluded.rate END,
  at_s = excluded.at_s,
  rate = excluded.rate,
  burst = excluded.burst
RETURNING wait_s
"""  # noqa: S608 (fixed fragments of this module; values are bound parameters)
_PG_PEEK = f"""
SELECT least(%(burst)s::float8, tokens + greatest(0, {_NOW} - at_s) * %(rate)s::float8)
FROM rate_buckets WHERE bucket = %(bucket)s
"""  # noqa: S608
# Rows whose bucket is full again hold nothing a missing row does not.
_PG_PRUNE = f"""
DELETE FROM rate_buckets WHERE at_s + (burst - tokens) / rate + %(margin)s::float8 < {_NOW}
"""  # noqa: S608
_PRUNE_EVERY_S = 60.0


class PostgresBuckets:
    """Buckets in the store's PostgreSQL database (table ``rate_buckets``, migration 18): one
    ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` per :meth:`call`, atomic under the row's
    lock.

    Parameters
    ----------
    url
        A libpq URL of a database migrated by steerfeed (the store's).
    namespace
        Prefix of every bucket name (``<namespace>:<bucket>``).
    clock
        Seconds; ``None`` (the default) uses the server's clock.
    max_connections
        The pool's size (calls at once).
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "steerfeed",
        clock: Callable[[], float] | None = None,
        max_connections: int = 4,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self._clock = clock
        timeout_ms = int(CALL_TIMEOUT_S * 1000)
        # open=True without waiting: a server that is down at start-up must not stop the API
        # from starting; calls fail fast until the pool connects.
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            kwargs={
                "autocommit": True,
                "connect_timeout": 2,
                # A lost network: sent bytes unacknowledged this long fail the call (the
                # statement timeout covers a slow server, not a silent one).
                "tcp_user_timeout": timeout_ms * 2,
                "options": f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}",
                "prepare_threshold": 0,  # prepared from the first call: the statement is fixed
            },
            timeout=CALL_TIMEOUT_S,
            open=True,
            name="steerfeed-buckets",
        )
        self._next_prune = time.monotonic() + _PRUNE_EVERY_S

    def call(self, bucket: str, rate: float, burst: float, mode: Mode = "take") -> float:
        """See :meth:`SharedBuckets.call`."""
        params: dict[str, Any] = {
            "bucket": f"{self.namespace}:{bucket}",
            "rate": float(rate),
            "burst": float(burst),
            "now": self._clock() if self._clock is not None else None,
            "drain": mode == "drain",
            "margin": _IDLE_MARGIN_S,
        }
        try:
            with self._pool.connection() as conn:
                if mode == "peek":
                    row = conn.execute(_PG_PEEK, params).fetchone()
                    tokens = float(row[0]) if row is not None else float(burst)
                    return 0.0 if tokens >= 1 else (1.0 - tokens) / rate
                row = conn.execute(_PG_UPSERT, params).fetchone()
        except Exception as exc:  # psycopg's errors and the pool's timeout alike
            msg = f"shared buckets at {_redacted(self.url)} did not answer: {exc}"
            raise BucketsUnavailableError(msg) from exc
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + _PRUNE_EVERY_S
            self.prune()
        return float(row[0]) if row is not None else 0.0

    def prune(self) -> int:
        """Delete the rows of buckets that are full again (a missing row is a full bucket);
        done by :meth:`call` once a minute per process. Returns how many were deleted (0 when
        the server does not answer: the next prune will)."""
        now = self._clock() if self._clock is not None else None
        try:
            with self._pool.connection() as conn:
                cur = conn.execute(_PG_PRUNE, {"now": now, "margin": _IDLE_MARGIN_S})
                return max(cur.rowcount, 0)
        except Exception:
            logger.warning("pruning full rate buckets failed", exc_info=True)
            return 0

    def close(self) -> None:
        """Close the connection pool."""
        with suppress(Exception):
            self._pool.close()


REDIS_SCHEMES = ("redis://", "rediss://")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_buckets(
    url: str, *, namespace: str = "steerfeed", clock: Callable[[], float] | None = None
) -> SharedBuckets:
    """Open the shared buckets at ``url`` (``redis://``, ``rediss://`` or ``postgresql://``)."""
    if url.startswith(REDIS_SCHEMES):
        return RedisBuckets(url, namespace=namespace, clock=clock)
    if url.startswith(POSTGRES_SCHEMES):
        return PostgresBuckets(url, namespace=namespace, clock=clock)
    msg = (
        f"unknown shared-bucket URL {_redacted(url)!r}: use redis://host:6379/0, rediss://... "
        "or postgresql://..."
    )
    raise ValueError(msg)


def _redacted(url: str) -> str:
    """The URL without its password."""
    head, sep, tail = url.partition("@")
    if not sep or "//" not in head:
        return url
    scheme, creds = head.split("//", 1)
    if ":" not in creds:
        return url
    return f"{scheme}//{creds.split(':', 1)[0]}:***@{tail}"
