"""A fence around each user's in-flight work, so that an erasure is the last write about them.

Work that may write about a user (a page with its side effects, a request naming the user, a
clip render) runs inside :meth:`UserFence.hold`. An erasure first :meth:`closes <UserFence.close>`
the fence (new holds are refused from then on), waits until the holds already inside have
ended, and only then deletes. Nothing started before the erasure can write after it, and
nothing can start after it.

The closed set is kept in memory for the life of the process (a page in flight cannot outlive
it); it holds ids only, never anything else about the person.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from storage.errors import UnknownEntityError


class UserErasedError(UnknownEntityError):
    """Work for a user who is being (or was) erased; answered like an unknown user (404)."""


class FenceBusyError(RuntimeError):
    """Work for the user was still in flight when the wait ended (retry the erasure)."""


class UserFence:
    """Counts in-flight work per user and refuses new work for closed (erased) users."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held: Counter[int] = Counter()
        self._closed: set[int] = set()

    def is_closed(self, user_id: int) -> bool:
        """Whether the user is being or was erased."""
        return user_id in self._closed

    @property
    def closed(self) -> frozenset[int]:
        """Users being or already erased (empty in the common case)."""
        with self._cond:
            return frozenset(self._closed)

    def enter(self, user_ids: Iterable[int | None]) -> tuple[int, ...]:
        """Register work for ``user_ids`` (``None`` entries are ignored); call :meth:`leave`
        with the returned ids when it ends. Raises :class:`UserErasedError` for a closed user."""
        ids = tuple(sorted({int(u) for u in user_ids if u is not None}))
        with self._cond:
            if any(u in self._closed for u in ids):
                msg = "unknown user: it was erased"
                raise UserErasedError(msg)
            self._held.update(ids)
        return ids

    def leave(self, ids: tuple[int, ...]) -> None:
        """End work registered by :meth:`enter`."""
        if not ids:
            return
        with self._cond:
            self._held.subtract(ids)
            for u in ids:
                if self._held[u] <= 0:
                    del self._held[u]
            self._cond.notify_all()

    @contextmanager
    def hold(self, user_ids: Iterable[int | None]) -> Iterator[None]:
        """Run a block as in-flight work for ``user_ids``."""
        ids = self.enter(user_ids)
        try:
            yield
        finally:
            self.leave(ids)

    def in_flight(self, user_id: int) -> int:
        """Pieces of work for the user now inside the fence."""
        with self._cond:
            return self._held.get(user_id, 0)

    def close(self, user_id: int, *, timeout_s: float) -> None:
        """Refuse new work for the user, then wait until the work inside has ended.

        Raises :class:`FenceBusyError` when work is still in flight after ``timeout_s``; the
        fence stays closed (the user's pages keep being refused), so the erasure can be retried.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._closed.add(user_id)
            while self._held.get(user_id, 0) > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    msg = (
                        f"{self._held[user_id]} piece(s) of work for the user were still in "
                        f"flight after {timeout_s:.0f} s; retry the erasure"
                    )
                    raise FenceBusyError(msg)
                self._cond.wait(left)
