"""trio_core.rtmp.registry: one publisher per path, players start at a keyframe, slow players
skip then drop, shared message bodies.
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
