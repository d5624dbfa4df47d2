"""The SRT I/O thread's ``step()`` with a stand-in for libsrt: ``srt_epoll_uwait`` reports
how many sockets are ready, which may be more than the event array holds (100 callers closing
or sending at once); the loop must handle the ones it got and leave the rest for the next
wait (libsrt's epoll is level-triggered), not die with IndexError."""

from __future__ import annotations

import ctypes
from typing import Any

from trio_core.srt.binding import SRT_EPOLL_ERR, SRT_EPOLL_IN
from trio_core.srt.server import SrtServer, _IoLoop


class FakeLib:
    """Ready sockets 1000..1000+ready-1, none of them known to the hub."""

    def __init__(self, ready: int) -> None:
        self.pending = list(range(1000, 1000 + ready))
        self.removed: list[int] = []

    def epoll_wait(self, eid: int, events: ctypes.Array[Any], timeout_ms: int) -> int:
        for i, sock in enumerate(self.pending[:len(events)]):
            events[i].fd = sock
            events[i].events = SRT_EPOLL_IN | SRT_EPOLL_ERR
        return len(self.pending)  # as libsrt: all ready sockets, not only those filled in

    def epoll_remove(self, eid: int, sock: int) -> None:
        self.removed.append(sock)
        self.pending.remove(sock)


def test_more_ready_sockets_than_event_slots() -> None:
    lib = FakeLib(100)
    server = SrtServer(lib=lib)  # type: ignore[arg-type]
    io = _IoLoop(server, lib, listener=1, eid=7)  # type: ignore[arg-type]
    io.step()
    assert len(lib.removed) == len(io.events) < 100  # what fitted was handled
    io.step()
    assert sorted(lib.removed) == list(range(1000, 1100))  # the rest on the next wait
    io.step()
    assert len(lib.removed) == 100
