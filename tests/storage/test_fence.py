"""The user fence: an erasure waits for the user's in-flight work and refuses new work."""

from __future__ import annotations

import threading
import time

import pytest

from storage.errors import UnknownEntityError
from storage.fence import FenceBusyError, UserErasedError, UserFence


def test_close_waits_for_work_inside_and_refuses_new_work() -> None:
    fence = UserFence()
    inside = threading.Event()
    leave = threading.Event()
    order: list[str] = []

    def work() -> None:
        with fence.hold([7, None]):
            inside.set()
            assert leave.wait(10)
            order.append("work ended")

    def erase() -> None:
        fence.close(7, timeout_s=10)
        order.append("closed")

    t = threading.Thread(target=work)
    t.start()
    assert inside.wait(10)
    e = threading.Thread(target=erase)
    e.start()
    time.sleep(0.2)
    assert order == [] and fence.is_closed(7) and fence.in_flight(7) == 1
    with pytest.raises(UserErasedError):  # new work is refused while the old one finishes
        fence.enter([7])
    leave.set()
    t.join(10)
    e.join(10)
    assert order == ["work ended", "closed"]
    with pytest.raises(UnknownEntityError, match="erased"):  # answered as an unknown user
        fence.enter([8, 7])
    assert fence.in_flight(8) == 0  # a refused hold registers nothing
    with fence.hold([8]):  # other users are untouched
        assert fence.in_flight(8) == 1


def test_close_gives_up_after_its_timeout_and_stays_closed() -> None:
    fence = UserFence()
    ids = fence.enter([3])
    with pytest.raises(FenceBusyError, match="retry"):
        fence.close(3, timeout_s=0.05)
    assert fence.is_closed(3) and fence.closed == frozenset({3})
    fence.leave(ids)
    fence.close(3, timeout_s=0.05)  # the retry goes through
