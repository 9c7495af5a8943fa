"""API keys and roles: who may call what."""

from __future__ import annotations

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
