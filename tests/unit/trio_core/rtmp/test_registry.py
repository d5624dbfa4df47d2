"""trio_core.rtmp.registry: one publisher per path, players start at a keyframe, slow players
skip then drop, shared message bodies.

The RTMP relay's policies (``trio_core/rtmp/registry.py``), written from the behaviour of
the registry before it ran on the shared relay core: what a new player gets, the GOP cache's
byte bound and overflow, the player queue's byte bound, skip to keyframe, drop after
``max_skips``, the counters, and one publisher per path. Pure: no sockets, no trio run.
"""

from __future__ import annotations

from rtmp import amf0
from rtmp.chunk import ChunkReader
from trio_core.rtmp.registry import Channel, Player, StreamRegistry  # noqa: E402

AVC_SEQ, AAC_SEQ = b"\x17\x00\x00\x00\x00cfg", b"\xaf\x00\x12\x10"


def _key(n: int) -> bytes:
    return b"\x17\x01\x00\x00\x00" + bytes([n]) * 50


def _inter(n: int) -> bytes:
    return b"\x27\x01\x00\x00\x00" + bytes([n]) * 50


def _received(player: Player) -> list[tuple[int, int, bytes]]:
    reader = ChunkReader()
    reader.chunk_size = player.chunk_size
    return [(m.type_id, m.timestamp, m.payload) for m in reader.receive_data(player.take())]


def _player(max_queue_bytes: int = 1 << 20, max_skips: int = 2) -> Player:
    return Player("x", 1, 4096, max_queue_bytes=max_queue_bytes, max_skips=max_skips)


def test_player_starts_at_keyframe_with_sequence_headers_and_rebased_time() -> None:
    ch = Channel("/live/x")
    ch.on_media(9, 1000, AVC_SEQ)
    ch.on_media(8, 1000, AAC_SEQ)
    ch.on_media(9, 1000, _inter(0))  # before any keyframe: not cached
    ch.on_media(9, 1040, _key(1))
    ch.on_media(8, 1050, b"\xaf\x01a")
    ch.on_media(9, 1080, _inter(2))
    late = _player()
    ch.add_player(late)  # joins mid-GOP: gets the GOP from its keyframe
    ch.on_media(9, 1120, _inter(3))
    assert _received(late) == [
        (9, 0, AVC_SEQ), (8, 0, AAC_SEQ), (9, 0, _key(1)), (8, 10, b"\xaf\x01a"),
        (9, 40, _inter(2)), (9, 80, _inter(3))]
    early = _player()
    ch2 = Channel("/live/y")
    ch2.on_media(9, 5000, AVC_SEQ)
    ch2.add_player(early)  # no keyframe yet: waits
    ch2.on_media(9, 5040, _inter(0))
    assert _received(early) == []
    ch2.on_media(9, 5080, _key(1))
    assert _received(early) == [(9, 0, AVC_SEQ), (9, 0, _key(1))]


def test_audio_only_stream_starts_players_at_once() -> None:
    ch = Channel("/a")
    ch.on_media(8, 70, AAC_SEQ)
    ch.on_media(8, 90, b"\xaf\x01a")
    player = _player()
    ch.add_player(player)
    ch.on_media(8, 110, b"\xaf\x01b")
    ch.on_media(8, 130, b"\xaf\x01c")
    assert _received(player) == [(8, 0, AAC_SEQ), (8, 0, b"\xaf\x01b"), (8, 20, b"\xaf\x01c")]


def test_slow_player_skips_to_next_keyframe_then_is_dropped_others_unaffected() -> None:
    ch = Channel("/x")
    ch.on_media(9, 0, AVC_SEQ)
    ch.on_media(9, 0, _key(0))
    slow, fast = _player(max_queue_bytes=400, max_skips=1), _player()
    ch.add_player(slow)
    ch.add_player(fast)
    fast.take()
    for i in range(1, 8):  # the slow player never reads
        ch.on_media(9, i * 40, _inter(i))
    assert slow.skips == 1 and slow.waiting_keyframe and not slow.dropped
    assert slow.queued_bytes == 0  # its queue was dropped, not grown
    ch.on_media(9, 320, _key(8))  # resumes at the keyframe, time continues
    assert not slow.waiting_keyframe
    assert _received(slow) == [(9, 320, _key(8))]
    for i in range(9, 20):
        ch.on_media(9, i * 40, _inter(i))
    assert slow.dropped  # second overflow with max_skips=1
    got = _received(fast)
    assert [t for _, t, _ in got] == [i * 40 for i in range(1, 20)]  # everything, in order


def test_registry_one_publisher_per_path_and_close_notifies_players() -> None:
    reg = StreamRegistry()
    ch = reg.publish("/live/x")
    assert ch is not None and reg.publish("/live/x") is None
    player = _player()
    ch.add_player(player)
    notified = []
    ch.close(notified.append)
    assert notified == [player] and player.closed
    reg.unpublish(ch)
    assert reg.names() == [] and reg.publish("/live/x") is not None


def test_metadata_update_reaches_started_players() -> None:
    ch = Channel("/x")
    ch.set_metadata(amf0.encode_all("onMetaData", {"width": 320.0}), {"width": 320.0, "videocodecid": 7.0})
    ch.on_media(9, 0, AVC_SEQ)
    ch.on_media(9, 0, _key(0))
    player = _player()
    ch.add_player(player)
    player.take()
    update = amf0.encode_all("onMetaData", {"width": 640.0})
    ch.set_metadata(update, {"width": 640.0})
    reader = ChunkReader()
    reader.chunk_size = 4096
    assert [(m.type_id, m.payload) for m in reader.receive_data(player.take())] == [(18, update)]
    assert ch.metadata == update


def test_player_queues_share_the_message_body() -> None:
    ch = Channel("/x")
    ch.on_media(9, 0, AVC_SEQ)
    ch.on_media(9, 0, _key(0))
    a, b = _player(), _player()
    ch.add_player(a)
    ch.add_player(b)
    a.take(), b.take()
    big = b"\x27\x01\x00\x00\x00" + bytes(20000)
    ch.on_media(9, 40, big)
    # each queue: own header, then the same first-chunk and continuation objects
    assert a.queue[0] is not b.queue[0]
    assert a.queue[1] is b.queue[1] and a.queue[2] is b.queue[2]
    assert len(a.queue[1]) == 4096 and a.queued_bytes == sum(len(x) for x in a.queue)
    assert _received(a) == _received(b) == [(9, 40, big)]


AVC_SEQ = b"\x17\x00\x00\x00\x00cfg"
AAC_SEQ = b"\xaf\x00\x12\x10"
VIDEO, AUDIO = 9, 8


def key(n: int, size: int = 50) -> bytes:
    return b"\x17\x01\x00\x00\x00" + bytes([n]) * size


def inter(n: int, size: int = 50) -> bytes:
    return b"\x27\x01\x00\x00\x00" + bytes([n]) * size


def aac(n: int) -> bytes:
    return b"\xaf\x01" + bytes([n]) * 10


def received(player: Player) -> list[tuple[int, int, bytes]]:
    reader = ChunkReader()
    reader.chunk_size = player.chunk_size
    return [(m.type_id, m.timestamp, m.payload) for m in reader.receive_data(player.take())]


def player(max_queue_bytes: int = 1 << 20, max_skips: int = 3) -> Player:
    return Player("x", 1, 4096, max_queue_bytes=max_queue_bytes, max_skips=max_skips)


def test_a_player_joining_before_any_keyframe_waits_for_one_and_gets_headers_first() -> None:
    ch = Channel("/live/x")
    ch.on_media(AUDIO, 10, AAC_SEQ)
    ch.on_media(VIDEO, 10, AVC_SEQ)
    p = player()
    ch.add_player(p)
    for i in range(3):
        ch.on_media(VIDEO, 20 + i * 40, inter(i))
        ch.on_media(AUDIO, 30 + i * 40, aac(i))
    assert received(p) == [] and not p.started
    ch.on_media(VIDEO, 500, key(9))
    ch.on_media(AUDIO, 510, aac(9))
    # video header, audio header, then the keyframe; the keyframe's time is the new 0
    assert received(p) == [(VIDEO, 0, AVC_SEQ), (AUDIO, 0, AAC_SEQ), (VIDEO, 0, key(9)),
                           (AUDIO, 10, aac(9))]
    assert p.started


def test_a_player_joining_mid_gop_gets_the_whole_gop_from_its_keyframe() -> None:
    ch = Channel("/x")
    ch.on_media(VIDEO, 0, AVC_SEQ)
    ch.on_media(VIDEO, 0, key(0))
    ch.on_media(VIDEO, 40, inter(1))
    ch.on_media(VIDEO, 80, key(2))  # a new GOP replaces the cached one
    ch.on_media(AUDIO, 90, aac(3))
    ch.on_media(VIDEO, 120, inter(4))
    assert len(ch.gop) == 3
    p = player()
    ch.add_player(p)
    assert received(p) == [(VIDEO, 0, AVC_SEQ), (VIDEO, 0, key(2)), (AUDIO, 10, aac(3)),
                           (VIDEO, 40, inter(4))]


def test_a_new_sequence_header_reaches_started_players_only() -> None:
    ch = Channel("/x")
    ch.on_media(VIDEO, 0, AVC_SEQ)
    ch.on_media(VIDEO, 0, key(0))
    started, waiting = player(), player()
    ch.add_player(started)
    received(started)
    ch.on_media(VIDEO, 40, inter(1))
    ch.gop.clear()  # (no GOP to start on) -> this player waits for a keyframe
    ch.add_player(waiting)
    new_cfg = b"\x17\x00\x00\x00\x00new"
    ch.on_media(VIDEO, 80, new_cfg)
    assert received(started) == [(VIDEO, 40, inter(1)), (VIDEO, 80, new_cfg)]
    assert received(waiting) == []
    assert ch.video_config is not None and ch.video_config.payload == new_cfg
    ch.on_media(VIDEO, 120, key(2))
    assert received(waiting) == [(VIDEO, 0, new_cfg), (VIDEO, 0, key(2))]


def test_gop_cache_is_byte_bounded_and_after_overflow_waits_for_the_next_keyframe() -> None:
    ch = Channel("/x", max_gop_bytes=1000)
    ch.on_media(VIDEO, 0, AVC_SEQ)  # headers are not part of the GOP
    ch.on_media(VIDEO, 0, key(0, 300))
    ch.on_media(VIDEO, 40, inter(1, 300))
    ch.on_media(VIDEO, 80, inter(2, 300))
    assert len(ch.gop) == 3 and ch.gop_bytes == 3 * 305
    ch.on_media(VIDEO, 120, inter(3, 300))  # would be 1220 bytes: the cache is dropped
    assert len(ch.gop) == 0 and ch.gop_bytes == 0
    ch.on_media(VIDEO, 160, inter(4, 10))  # small, but not a keyframe: still not cached
    assert len(ch.gop) == 0
    late = player()
    ch.add_player(late)
    assert received(late) == []  # nothing to start on: waits
    ch.on_media(VIDEO, 200, key(5, 10))
    assert len(ch.gop) == 1 and ch.gop_bytes == 15
    assert received(late) == [(VIDEO, 0, AVC_SEQ), (VIDEO, 0, key(5, 10))]


def test_a_keyframe_larger_than_the_gop_bound_is_relayed_but_not_cached() -> None:
    ch = Channel("/x", max_gop_bytes=100)
    p = player()
    ch.add_player(p)
    ch.on_media(VIDEO, 0, key(0, 200))
    ch.on_media(VIDEO, 40, inter(1))
    assert len(ch.gop) == 0
    assert [t for _, t, _ in received(p)] == [0, 40]


def test_audio_only_streams_cache_nothing_and_start_players_at_once() -> None:
    ch = Channel("/a")
    ch.on_media(AUDIO, 0, AAC_SEQ)
    ch.on_media(AUDIO, 20, aac(1))
    assert len(ch.gop) == 0 and not ch.has_video and ch.has_audio
    p = player()
    ch.add_player(p)
    ch.on_media(AUDIO, 40, aac(2))
    assert received(p) == [(AUDIO, 0, AAC_SEQ), (AUDIO, 0, aac(2))]


def test_player_queue_is_byte_bounded_and_skips_to_the_next_keyframe() -> None:
    ch = Channel("/x")
    ch.on_media(VIDEO, 0, key(0, 100))
    p = player(max_queue_bytes=1000, max_skips=3)
    ch.add_player(p)
    sizes = []
    for i in range(1, 30):
        ch.on_media(VIDEO, i * 40, inter(i, 100))
        sizes.append(p.queued_bytes)
        if p.skips:
            break
    assert max(sizes[:-1]) <= 1000  # never above the bound
    assert p.skips == 1 and p.queued_bytes == 0 and not p.queue and p.waiting_keyframe
    ch.on_media(VIDEO, 2000, inter(99, 100))  # not a keyframe: not queued
    assert p.queued_bytes == 0
    ch.on_media(VIDEO, 2040, key(100, 100))
    ch.on_media(VIDEO, 2080, inter(101, 100))
    assert not p.waiting_keyframe
    assert [t for _, t, _ in received(p)] == [2040, 2080]  # time keeps its base
    assert not p.dropped


def test_an_overflow_on_a_keyframe_skips_and_resumes_at_that_keyframe() -> None:
    ch = Channel("/x")
    ch.on_media(VIDEO, 0, key(0, 100))
    p = player(max_queue_bytes=400, max_skips=3)
    ch.add_player(p)
    ch.on_media(VIDEO, 40, inter(1, 100))
    ch.on_media(VIDEO, 80, inter(2, 100))
    assert p.skips == 0
    ch.on_media(VIDEO, 120, key(3, 100))  # does not fit: the queue restarts at it
    assert p.skips == 1 and not p.waiting_keyframe
    assert received(p) == [(VIDEO, 120, key(3, 100))]


def test_a_player_is_dropped_after_max_skips_and_then_ignored() -> None:
    ch = Channel("/x")
    ch.on_media(VIDEO, 0, key(0, 100))
    p = player(max_queue_bytes=300, max_skips=3)
    ch.add_player(p)
    ts = 0
    overflows = 0
    while not p.dropped:
        ts += 40
        before = p.skips
        ch.on_media(VIDEO, ts, key(ts % 256, 100))  # keyframes: every overflow resumes at once
        overflows += p.skips != before or p.dropped
        assert ts < 10_000
    assert overflows == 4 and p.skips == 4  # 3 skips survive, the 4th overflow drops
    assert p.queued_bytes == 0
    ch.on_media(VIDEO, ts + 40, key(1, 10))
    assert not p.queue and p.take() == b""


def test_counters_of_channel_and_player() -> None:
    ch = Channel("/x")
    ch.on_media(VIDEO, 0, AVC_SEQ)
    ch.on_media(VIDEO, 0, key(0))
    ch.on_media(VIDEO, 40, b"")  # malformed: counted, dropped
    ch.on_media(AUDIO, 40, b"\xaf")
    p = player()
    ch.add_player(p)
    ch.on_media(VIDEO, 80, inter(1))
    assert ch.messages_in == 5
    assert ch.bytes_in == len(AVC_SEQ) + len(key(0)) + 1 + len(inter(1))
    assert ch.dropped_messages == 2
    assert ch.video_codec == "h264"
    assert p.messages == 2  # the keyframe and the inter frame (headers are control data)
    data = p.take()
    assert p.bytes_sent == len(data) > 0 and p.queued_bytes == 0
    p.take()
    assert p.bytes_sent == len(data)


def test_a_closed_player_takes_no_more_media() -> None:
    ch = Channel("/x")
    ch.on_media(VIDEO, 0, key(0))
    p = player()
    ch.add_player(p)
    p.take()
    ch.close()
    assert p.closed and not list(ch.players)
    ch.on_media(VIDEO, 40, inter(1))
    assert p.take() == b""
    assert len(ch.gop) == 0


def test_remove_player_stops_its_fan_out() -> None:
    ch = Channel("/x")
    ch.on_media(VIDEO, 0, key(0))
    a, b = player(), player()
    ch.add_player(a)
    ch.add_player(b)
    ch.remove_player(a)
    ch.remove_player(a)  # twice: harmless
    a.take(), b.take()
    ch.on_media(VIDEO, 40, inter(1))
    assert a.take() == b"" and received(b) == [(VIDEO, 40, inter(1))]


def test_registry_one_publisher_per_path_and_stale_unpublish_is_harmless() -> None:
    reg = StreamRegistry(chunk_size=1000)
    first = reg.publish("/live/b", "1.2.3.4:5")
    assert first is not None and first.remote == "1.2.3.4:5" and first.chunk_size == 1000
    assert reg.publish("/live/b") is None  # conflict: the first one is untouched
    assert reg.get("/live/b") is first
    assert reg.get("/live/none") is None  # not found
    assert reg.publish("/live/a") is not None
    assert reg.names() == ["/live/a", "/live/b"]
    reg.unpublish(first)
    second = reg.publish("/live/b")
    assert second is not None and second is not first
    reg.unpublish(first)  # the old channel again: the new publisher stays
    assert reg.get("/live/b") is second


def test_direct_sends_keep_the_order_and_leave_the_rest_to_the_writer() -> None:
    """A player with a socket fd gets each message by one non-blocking writev from the
    producer; when the socket is full the rest (and everything after it) waits for the writer
    task (take), in order, and no direct send overtakes what the writer holds (busy)."""
    import socket

    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        player = _player(max_queue_bytes=64 << 20)
        sent: list[int] = []
        player.fd, player.on_sent = a.fileno(), sent.append
        ch = Channel("/live/x")
        ch.on_media(9, 0, AVC_SEQ)
        ch.add_player(player)
        big = [b"\x27\x01\x00\x00\x00" + bytes([n]) * 20000 for n in range(40)]
        ch.on_media(9, 0, _key(1))
        assert not player.has_data and sent  # went out directly, nothing for the writer
        for n, payload in enumerate(big):
            ch.on_media(9, 40 * (n + 1), payload)
        assert player.has_data  # the socket filled up: the rest waits for the writer
        direct = sum(sent)
        rest = player.take()  # what the writer task sends (busy while it does)
        player.busy = True
        ch.on_media(9, 4000, _inter(7))  # queued behind the writer's bytes, not sent
        assert player.has_data
        wire = bytearray()
        while len(wire) < direct:
            wire += b.recv(1 << 20)
        assert len(wire) == direct
        player.busy = False
        wire += rest + player.take()
        reader = ChunkReader()
        reader.chunk_size = player.chunk_size
        got = [(m.timestamp, m.payload) for m in reader.receive_data(bytes(wire))]
        assert got == [(0, AVC_SEQ), (0, _key(1))] + [
            (40 * (n + 1), p) for n, p in enumerate(big)] + [(4000, _inter(7))]
        assert player.bytes_sent == len(wire)
    finally:
        a.close()
        b.close()
