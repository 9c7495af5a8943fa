"""The key cache forgets one key hash, or every key, when told (a key revoked elsewhere)."""

from __future__ import annotations

import time

from api.http import deps
from api.http.auth import KeyCache, Principal
from storage.store import hash_key


def test_invalidating_one_hash_forgets_only_that_key() -> None:
    cache = KeyCache(ttl_s=30.0)
    alice, bob = Principal("k1", "user", 1), Principal("k2", "user", 2)
    cache.put("h-alice", alice, 0.0)
    cache.put("h-bob", bob, 0.0)
    cache.put("h-wrong", None, 0.0)
    assert cache.invalidate("h-alice") == 1
    assert cache.get("h-alice", 1.0) == (False, None)  # looked up again: a revocation shows
    assert cache.get("h-bob", 1.0) == (True, bob)
    assert cache.invalidate("h-wrong") == 1  # an unknown key may have been created since
    assert cache.get("h-wrong", 1.0) == (False, None)
    assert cache.invalidate("h-never-seen") == 0
    assert cache.sizes() == (1, 0)


def test_invalidating_none_forgets_every_key() -> None:
    cache = KeyCache(ttl_s=30.0)
    cache.put("a", Principal("k1", "admin", None), 0.0)
    cache.put("b", None, 0.0)
    cache.put("c", None, 0.0)
    assert cache.invalidate(None) == 3
    assert cache.sizes() == (0, 0)
    assert cache.get("a", 1.0) == (False, None)
    cache.put("a", Principal("k1", "admin", None), 2.0)  # still usable after
    assert cache.get("a", 3.0)[0] is True


def test_the_api_cache_is_keyed_by_the_stored_key_hash() -> None:
    """A change feed that carries ``api_keys.key_hash`` drops the key the API cached."""
    deps.forget_cached_keys()
    key = "sf_0123456789ab_secret"
    deps._key_cache.put(hash_key(key), Principal("0123456789ab", "user", 7), time.monotonic())
    assert deps.cached_key(key)[0] is True
    assert deps._key_cache.invalidate(hash_key(key)) == 1
    assert deps.cached_key(key) == (False, None)
