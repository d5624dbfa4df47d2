"""trio_core.srt.sessions: SRT connections follow the hub's snapshot as sessions."""

from __future__ import annotations


class _Stats:
    def __init__(self, rx: int, tx: int) -> None:
        self.byteRecvTotal, self.byteSentTotal = rx, tx


class _FakeServer:
    """What SrtSessions reads: the published snapshot and libsrt's per-socket byte totals."""

    def __init__(self) -> None:
        from trio_core.srt.hub import EMPTY_SNAPSHOT
        self.snapshot = EMPTY_SNAPSHOT
        self.bytes: dict[int, tuple[int, int]] = {}
        self.lib = self

    def bstats(self, sock: int) -> _Stats:
        from trio_core.srt.binding import SrtError
        if sock not in self.bytes:
            raise SrtError("srt_bstats", 5004, "closed")
        return _Stats(*self.bytes[sock])


def test_srt_sessions_follow_the_snapshot() -> None:
    from trio_core.observability.sessions import SessionRegistry
    from trio_core.srt.hub import Snapshot
    from trio_core.srt.sessions import SrtSessions, peer_ip

    assert peer_ip("10.0.0.1:5000") == "10.0.0.1" and peer_ip("[::1]:9") == "::1"
    registry = SessionRegistry(ignore=["10.9.0.0/16"], clock=lambda: 100.0, wall=lambda: 1e9)
    srt = registry.register("srt")
    server = _FakeServer()
    sessions = SrtSessions(server, lambda: srt)  # type: ignore[arg-type]
    # a publisher, a subscriber and an ignored subscriber
    server.snapshot = Snapshot({"live": 1}, {"live": (2, 3)},
                               {1: "10.0.0.1:5000", 2: "10.0.0.2:6000", 3: "10.9.0.3:7000"})
    server.bytes = {1: (1000, 50), 2: (40, 700), 3: (10, 900)}
    sessions.sync()
    server.bytes = {1: (3000, 80), 2: (60, 2700), 3: (10, 5000)}
    sessions.sync()
    active = {s["id"]: s for s in srt.active()}
    assert set(active) == {"live", "10.0.0.2:6000"}
    assert active["live"]["local"] == "publish:live"
    assert active["live"]["remote"] == "10.0.0.1:5000"
    assert (active["live"]["bytes_rx"], active["live"]["bytes_tx"]) == (3000, 80)
    assert active["10.0.0.2:6000"]["local"] == "play:live"
    assert active["10.0.0.2:6000"]["reference"] == "live"
    assert (active["10.0.0.2:6000"]["bytes_rx"], active["10.0.0.2:6000"]["bytes_tx"]) == (60, 2700)
    # the publisher reconnects (new socket, same resource) and the subscriber leaves
    server.snapshot = Snapshot({"live": 4}, {}, {4: "10.0.0.1:5001"})
    server.bytes = {4: (500, 0)}
    sessions.sync()
    active = {s["id"]: s for s in srt.active()}
    assert set(active) == {"live"}
    assert active["live"]["remote"] == "10.0.0.1:5001" and active["live"]["bytes_rx"] == 500
    assert srt.summary()["summary"]["sessions"] == 2  # the first publisher and the subscriber ended
    sessions.close()
    assert srt.active() == [] and srt.summary()["summary"]["sessions"] == 3
