"""API keys and roles: who may call what."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from fastapi import HTTPException, status

ROLE_SERVICE = "service"
ROLE_USER = "user"
ROLE_ANALYST = "analyst"
ROLE_ADMIN = "admin"
ROLE_PARENT = "parent"


@dataclass(frozen=True)
class Principal:
    """The caller, from its API key."""

    key_id: str
    role: str
    user_id: int | None

    def require(self, *roles: str) -> None:
        """Raise 403 unless the caller has one of ``roles``."""
        if self.role not in roles:
            msg = f"role {self.role!r} may not do this; needs one of: {', '.join(roles)}"
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=msg)

    def require_user_access(self, user_id: int, *, parent_of: set[int] | None = None) -> None:
        """Raise 403 unless the caller may act for ``user_id``.

        ``service`` and ``admin`` act for anyone, ``user`` only for itself, ``parent`` for
        itself and linked teens.
        """
        if self.role in (ROLE_SERVICE, ROLE_ADMIN):
            return
        if self.role in (ROLE_USER, ROLE_PARENT) and self.user_id == user_id:
            return
        if self.role == ROLE_PARENT and parent_of and user_id in parent_of:
            return
        msg = f"this key may not act for user {user_id}"
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=msg)


#: Longest ``Authorization`` key looked up; real keys are 48 characters (``sf_<id>_<secret>``).
MAX_KEY_CHARS = 256


class KeyCache:
    """Key lookups by key hash, kept ``ttl_s`` seconds, in two bounded LRU maps.

    Valid keys and unknown ones are kept apart, so a flood of wrong keys evicts only other
    wrong keys: ``max_unknown`` bounds what a caller without a key can make the server hold,
    and a valid key stays cached while it is used.
    """

    def __init__(
        self, *, ttl_s: float = 30.0, max_known: int = 50_000, max_unknown: int = 10_000
    ) -> None:
        self.ttl_s = ttl_s
        self.max_known = max_known
        self.max_unknown = max_unknown
        self._known: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: str, now: float) -> tuple[bool, Principal | None]:
        """``(True, principal)`` for a fresh valid entry, ``(True, None)`` for a fresh unknown
        one, ``(False, None)`` when the key must be looked up."""
        with self._lock:
            hit = self._known.get(digest)
            if hit is not None:
                if now - hit[0] <= self.ttl_s:
                    self._known.move_to_end(digest)
                    return True, hit[1]
                del self._known[digest]
            seen = self._unknown.get(digest)
            if seen is not None:
                if now - seen <= self.ttl_s:
                    return True, None
                del self._unknown[digest]
        return False, None

    def put(self, digest: str, principal: Principal | None, now: float) -> None:
        """Remember a lookup's result, evicting the least recently used entry when full."""
        with self._lock:
            if principal is not None:
                self._unknown.pop(digest, None)
                self._known[digest] = (now, principal)
                self._known.move_to_end(digest)
                while len(self._known) > self.max_known:
                    self._known.popitem(last=False)
            else:
                self._known.pop(digest, None)
                self._unknown[digest] = now
                self._unknown.move_to_end(digest)
                while len(self._unknown) > self.max_unknown:
                    self._unknown.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry (after a key is revoked or its user erased)."""
        with self._lock:
            self._known.clear()
            self._unknown.clear()

    def invalidate(self, digest: str | None) -> int:
        """Forget the entry of one key hash (``None``: every entry), so its next use is looked
        up again; for a change feed that learns a key was revoked or created on another
        worker. Returns how many entries were dropped."""
        with self._lock:
            if digest is None:
                dropped = len(self._known) + len(self._unknown)
                self._known.clear()
                self._unknown.clear()
                return dropped
            known = self._known.pop(digest, None) is not None
            unknown = self._unknown.pop(digest, None) is not None
            return int(known) + int(unknown)

    def sizes(self) -> tuple[int, int]:
        """``(valid, unknown)`` entries held."""
        with self._lock:
            return len(self._known), len(self._unknown)


# -- route policy (applied to every authenticated request, before the route's own checks) -----
# Paths under these prefixes change what every user sees (experiments, model and registry
# promotion): only ``admin`` writes them; ``analyst`` may read them.
ADMIN_PREFIXES: tuple[str, ...] = (
    "/v1/experiments",
    "/v1/models",
    "/v1/registries",
    "/v1/registry",
    "/v1/admin",
)
# Routes anyone may call without a key (liveness probes). Other routers mark a public route by
# giving it the tag ``"public"``.
PUBLIC_PATHS: frozenset[str] = frozenset({"/healthz", "/livez", "/readyz"})
PUBLIC_TAG = "public"
READ_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS"})
# Path or query parameters that name the user a request acts for.
USER_SCOPE_PARAMS: tuple[str, ...] = ("user_id",)


def check_route_policy(
    principal: Principal,
    *,
    method: str,
    path: str,
    params: dict[str, str],
    parent_of: set[int] | None = None,
) -> None:
    """Raise 403 when ``principal`` may not call ``method path`` at all.

    The rules, in order: ``analyst`` keys are read-only; the admin areas
    (:data:`ADMIN_PREFIXES`) take ``admin`` (``analyst`` may read them); a ``user`` or
    ``parent`` key may only name its own user (or, for a parent, a linked teen) in a
    ``user_id`` path or query parameter. Routes add finer checks of their own.
    """
    method = method.upper()
    if principal.role == ROLE_ANALYST and method not in READ_METHODS:
        msg = f"analyst keys are read-only; {method} {path} needs an admin or service key"
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=msg)
    if any(path == p or path.startswith(p + "/") for p in ADMIN_PREFIXES):
        allowed = (ROLE_ADMIN, ROLE_ANALYST) if method in READ_METHODS else (ROLE_ADMIN,)
        principal.require(*allowed)
    if principal.role in (ROLE_USER, ROLE_PARENT):
        for name in USER_SCOPE_PARAMS:
            raw = params.get(name)
            if raw is None:
                continue
            try:
                uid = int(raw)
            except ValueError:
                continue  # the route's own validation answers 422
            principal.require_user_access(uid, parent_of=parent_of)
