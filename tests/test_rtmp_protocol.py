"""The sans-IO RTMP package: AMF0, handshake, chunk stream, media classification, commands,
and the pure parts of the server (paths/tokens/placeholder, channel fan-out rules)."""

from __future__ import annotations

import math

import pytest

from rtmp import amf0
from rtmp.chunk import ChunkReader, Message, MessageType, encode_message
from rtmp.connection import (
    ClientConnection,
    Connected,
    MediaReceived,
    MetadataReceived,
    PlayRequested,
    PublishRequested,
    ServerConnection,
    StatusReceived,
    StreamCreated,
    StreamDeleted,
)
from rtmp.errors import AmfError, LimitExceeded, RtmpError
from rtmp.handshake import HANDSHAKE_SIZE, ClientHandshake, ServerHandshake
from rtmp.media import parse_audio, parse_video
from trio_core.rtmp.paths import placeholder_template, resolve_request

# --- AMF0 ----------------------------------------------------------------------------------


def test_amf0_round_trip_and_known_bytes() -> None:
    values = ["connect", 1.0, {"app": "live", "n": None, "ok": True, "list": [1.0, "a"],
                               "meta": amf0.EcmaArray(width=320.0)}, None, amf0.UNDEFINED,
              amf0.AmfDate(1000.0, 0), "x" * 70000]
    data = amf0.encode_all(*values)
    decoded = amf0.decode_all(data)
    assert decoded[:2] == ["connect", 1.0]
    assert decoded[2]["app"] == "live" and decoded[2]["n"] is None and decoded[2]["ok"] is True
    assert decoded[2]["list"] == [1.0, "a"]
    assert isinstance(decoded[2]["meta"], amf0.EcmaArray) and decoded[2]["meta"] == {"width": 320.0}
    assert decoded[3] is None and decoded[4] is amf0.UNDEFINED
    assert decoded[5] == amf0.AmfDate(1000.0, 0)
    assert decoded[6] == "x" * 70000  # long string (0x0c)
    # bytes as the specification lays them out
    assert amf0.encode(1.5) == b"\x00\x3f\xf8" + b"\x00" * 6
    assert amf0.encode("ab") == b"\x02\x00\x02ab"
    assert amf0.encode({"a": True}) == b"\x03\x00\x01a\x01\x01\x00\x00\x09"
    assert math.isnan(amf0.decode(amf0.encode(float("nan")))[0])


@pytest.mark.parametrize(("data", "reason"), [
    (b"\x02\x00\x05ab", "amf-short"),
    (b"\x42", "amf-marker"),
    (b"\x02\x00\x02\xff\xfe", "amf-utf8"),
    (b"\x09", "amf-object-end"),
    (b"\x07\x00\x01", "amf-reference"),
    (b"\x0a\xff\xff\xff\xff\x05", "amf-count"),
    (b"\x03" + b"\x00\x01a\x03" * 40 + b"\x00\x00\x09", "amf-depth"),
])
def test_amf0_rejects_malformed_input(data: bytes, reason: str) -> None:
    with pytest.raises(AmfError) as info:
        amf0.decode_all(data)
    assert info.value.reason == reason


# --- handshake -----------------------------------------------------------------------------


def test_handshake_both_roles_byte_by_byte() -> None:
    server, client = ServerHandshake(), ClientHandshake()
    c0c1 = client.start()
    assert len(c0c1) == 1 + HANDSHAKE_SIZE and c0c1[0] == 3
    s012 = b"".join(server.receive_data(c0c1[i:i + 1]) for i in range(len(c0c1)))
    assert len(s012) == 1 + 2 * HANDSHAKE_SIZE
    assert s012[1 + HANDSHAKE_SIZE:] == c0c1[1:]  # S2 echoes C1
    assert s012[5:9] == b"\x00\x00\x00\x00"  # zero version: no digest handshake asked for
    c2 = client.receive_data(s012 + b"extra")
    assert client.done and client.leftover == b"extra"
    assert c2 == s012[1:1 + HANDSHAKE_SIZE]
    assert server.receive_data(c2 + b"\x02more") == b""
    assert server.done and server.leftover == b"\x02more"
    with pytest.raises(RtmpError):
        server.receive_data(b"x")


@pytest.mark.parametrize("first", [b"\x06", b"\x00", b"GET / HTTP/1.1\r\n"])
def test_handshake_rejects_other_versions(first: bytes) -> None:
    with pytest.raises(RtmpError) as info:
        ServerHandshake().receive_data(first)
    assert info.value.reason == "handshake-version"


# --- chunk stream --------------------------------------------------------------------------


def _chunks(fmt: int, csid: int, header: bytes, body: bytes) -> bytes:
    return bytes([(fmt << 6) | csid]) + header + body


def test_chunk_reader_all_header_formats_and_interleaving() -> None:
    reader = ChunkReader()
    # fmt 0: ts 1000, len 200 (two chunks at 128), video, stream 1
    hdr0 = (1000).to_bytes(3, "big") + (200).to_bytes(3, "big") + b"\x09" + (1).to_bytes(4, "little")
    body = bytes(range(200))
    data = _chunks(0, 6, hdr0, body[:128])
    # an audio message on another chunk stream interleaved between the two video chunks
    hdr_a = (1010).to_bytes(3, "big") + (3).to_bytes(3, "big") + b"\x08" + (1).to_bytes(4, "little")
    data += _chunks(0, 4, hdr_a, b"\xaf\x01z")
    data += _chunks(3, 6, b"", body[128:])
    # fmt 1 (delta 40, new length/type), fmt 2 (delta 40), fmt 3 (repeats delta 40)
    data += _chunks(1, 6, (40).to_bytes(3, "big") + (2).to_bytes(3, "big") + b"\x09", b"\x27\x01")
    data += _chunks(2, 6, (40).to_bytes(3, "big"), b"\x27\x01")
    data += _chunks(3, 6, b"", b"\x27\x01")
    msgs: list[Message] = []
    for i in range(0, len(data), 7):  # arbitrary split points
        msgs += reader.receive_data(data[i:i + 7])
    assert [(m.type_id, m.timestamp, len(m.payload)) for m in msgs] == [
        (8, 1010, 3), (9, 1000, 200), (9, 1040, 2), (9, 1080, 2), (9, 1120, 2)]
    assert msgs[1].payload == body and msgs[1].stream_id == 1


def test_chunk_round_trip_extended_timestamp_and_chunk_size() -> None:
    reader = ChunkReader()
    big = bytes(range(256)) * 40
    set_size = encode_message(Message(MessageType.SET_CHUNK_SIZE, 0, 0, (4096).to_bytes(4, "big"), 2), 128)
    msg = Message(MessageType.VIDEO, 1, 0x1234567, big, 6)  # > 2^24-1 ms: extended
    out = reader.receive_data(set_size + encode_message(msg, 4096) + encode_message(
        Message(MessageType.AUDIO, 1, 5, b"\xaf\x01", 300), 4096))
    assert reader.chunk_size == 4096
    assert out[1].timestamp == 0x1234567 and out[1].payload == big
    assert out[2].csid == 300 and out[2].payload == b"\xaf\x01"


def test_chunk_reader_limits() -> None:
    hdr = (0).to_bytes(3, "big") + (0xFFFFFF).to_bytes(3, "big") + b"\x09" + bytes(4)
    with pytest.raises(LimitExceeded) as info:
        ChunkReader(max_message_size=1 << 20).receive_data(_chunks(0, 6, hdr, b""))
    assert info.value.reason == "message-size"
    with pytest.raises(RtmpError) as info2:  # chunk size below 128
        ChunkReader().receive_data(encode_message(
            Message(MessageType.SET_CHUNK_SIZE, 0, 0, (1).to_bytes(4, "big"), 2), 128))
    assert info2.value.reason == "chunk-size"
    with pytest.raises(RtmpError) as info3:  # top bit set
        ChunkReader().receive_data(encode_message(
            Message(MessageType.SET_CHUNK_SIZE, 0, 0, b"\x80\x00\x10\x00", 2), 128))
    assert info3.value.reason == "chunk-size"
    huge = ChunkReader()  # a huge (legal) chunk size is clamped, messages still bounded
    huge.receive_data(encode_message(Message(MessageType.SET_CHUNK_SIZE, 0, 0, b"\x7f\xff\xff\xff", 2), 128))
    assert huge.chunk_size == 0xFFFFFF
    reader = ChunkReader(max_chunk_streams=4)
    partial = (0).to_bytes(3, "big") + (1000).to_bytes(3, "big") + b"\x09" + bytes(4)
    with pytest.raises(LimitExceeded) as info4:
        reader.receive_data(b"".join(_chunks(0, c, partial, b"x" * 128) for c in range(3, 9)))
    assert info4.value.reason == "chunk-streams"
    with pytest.raises(RtmpError) as info5:
        ChunkReader().receive_data(_chunks(3, 5, b"", b"x"))
    assert info5.value.reason == "chunk-no-header"
    pending = ChunkReader(max_message_size=1000, max_pending_bytes=2000)
    with pytest.raises(LimitExceeded) as info6:
        pending.receive_data(b"".join(_chunks(0, c, partial, b"x" * 128) for c in range(3, 30)))
    assert info6.value.reason == "pending-bytes"


# --- media ---------------------------------------------------------------------------------


def test_media_classification_legacy_and_enhanced() -> None:
    avc_seq = parse_video(b"\x17\x00\x00\x00\x00\x01\x42")
    assert (avc_seq.codec, avc_seq.sequence_header, avc_seq.keyframe) == ("h264", True, False)
    assert parse_video(b"\x17\x01\x00\x00\x00").keyframe
    inter = parse_video(b"\x27\x01\x00\x00\x00")
    assert inter.codec == "h264" and not inter.keyframe
    assert parse_video(b"\x17\x02\x00\x00\x00").sequence_end
    # Enhanced RTMP: IsExHeader | frame type 1 | packet type, then FourCC
    hevc_seq = parse_video(b"\x90hvc1\x01")
    assert (hevc_seq.codec, hevc_seq.sequence_header, hevc_seq.enhanced) == ("hevc", True, True)
    av1_key = parse_video(b"\x91av01\x00")
    assert (av1_key.codec, av1_key.keyframe) == ("av1", True)
    vp9_inter = parse_video(b"\xa3vp09")
    assert (vp9_inter.codec, vp9_inter.keyframe) == ("vp9", False)
    assert parse_video(b"\x1c\x01\x00\x00\x00").codec == "hevc"  # legacy id 12
    assert parse_audio(b"\xaf\x00\x12\x10").sequence_header
    assert not parse_audio(b"\xaf\x01\x00").sequence_header
    assert parse_audio(b"\x90Opus").codec == "opus"
    assert parse_audio(b"\x2f").codec == "mp3"
    for bad in (b"", b"\x17", b"\x90hv"):
        with pytest.raises(RtmpError):
            parse_video(bad)
    for bad in (b"", b"\xaf", b"\x90Op"):
        with pytest.raises(RtmpError):
            parse_audio(bad)


# --- commands (client <-> server in memory) ------------------------------------------------


def _pump(server: ServerConnection, client: ClientConnection) -> tuple[list, list]:
    server_events, client_events = [], []
    for _ in range(8):
        data = client.data_to_send()
        if data:
            server_events += server.receive_data(data)
        data = server.data_to_send()
        if data:
            client_events += client.receive_data(data)
    return server_events, client_events


def _connected_pair() -> tuple[ServerConnection, ClientConnection]:
    server, client = ServerConnection(), ClientConnection()
    client.connect("live", "rtmp://h/live")
    client.create_stream()
    server.receive_data(client.start())
    s_events, c_events = _pump(server, client)
    assert server.app == "live" and server.tc_url == "rtmp://h/live"
    assert any(isinstance(e, Connected) for e in c_events)
    assert StreamCreated(1) in c_events
    return server, client


def test_publish_flow_media_metadata_and_delete() -> None:
    server, client = _connected_pair()
    client.publish(1, "x?token=t")
    s_events, _ = _pump(server, client)
    assert s_events == [PublishRequested(1, "x?token=t", "live")]
    client.send_media(1, MessageType.VIDEO, 40, b"\x27\x01\x00\x00\x00ignored")  # not yet accepted
    assert _pump(server, client)[0] == []
    server.accept_publish(1, "x")
    _, c_events = _pump(server, client)
    assert StatusReceived(1, "status", "NetStream.Publish.Start", "x is now published.") in c_events
    client.send_metadata(1, {"width": 320.0, "videocodecid": 7.0})
    client.send_media(1, MessageType.VIDEO, 80, b"\x17\x01" + b"v" * 9000)
    client.send_media(1, MessageType.AUDIO, 81, b"\xaf\x01aa")
    s_events, _ = _pump(server, client)
    meta = s_events[0]
    assert isinstance(meta, MetadataReceived) and meta.values["width"] == 320.0
    assert amf0.decode_all(meta.payload)[0] == "onMetaData"  # @setDataFrame stripped
    assert s_events[1:] == [MediaReceived(1, 9, 80, b"\x17\x01" + b"v" * 9000),
                            MediaReceived(1, 8, 81, b"\xaf\x01aa")]
    client.delete_stream(1)
    assert _pump(server, client)[0] == [StreamDeleted(1)]


def test_play_flow_and_rejection() -> None:
    server, client = _connected_pair()
    client.play(1, "x")
    s_events, _ = _pump(server, client)
    assert s_events == [PlayRequested(1, "x")]
    server.accept_play(1, "x", amf0.encode_all("onMetaData", {"width": 320.0}))
    _, c_events = _pump(server, client)
    codes = [e.code for e in c_events if isinstance(e, StatusReceived)]
    assert codes == ["NetStream.Play.Reset", "NetStream.Play.Start"]
    assert any(isinstance(e, MetadataReceived) and e.values == {"width": 320.0} for e in c_events)
    server.reject(1, "NetStream.Play.StreamNotFound", "nope")
    _, c_events = _pump(server, client)
    assert c_events == [StatusReceived(1, "error", "NetStream.Play.StreamNotFound", "nope")]


def test_protocol_violations_are_typed_errors() -> None:
    server = ServerConnection()
    client = ClientConnection()
    server.receive_data(client.start())
    client.receive_data(server.data_to_send())
    c2 = client.data_to_send()
    cmd = encode_message(Message(MessageType.COMMAND_AMF0, 0, 0,
                                 amf0.encode_all("createStream", 2.0, None), 3), 128)
    with pytest.raises(RtmpError) as info:
        server.receive_data(c2 + cmd)
    assert info.value.reason == "not-connected"
    server2, client2 = _connected_pair()
    with pytest.raises(RtmpError) as info2:  # publish on a stream never created
        server2.receive_data(encode_message(Message(
            MessageType.COMMAND_AMF0, 7, 0, amf0.encode_all("publish", 0.0, None, "x"), 8), 4096))
    assert info2.value.reason == "stream-unknown"
    server3, _ = _connected_pair()
    with pytest.raises(AmfError):
        server3.receive_data(encode_message(Message(MessageType.COMMAND_AMF0, 0, 0, b"\x02\x00\x09abc", 3), 128))
    server5, _ = _connected_pair()  # before publishing, only command-sized messages
    with pytest.raises(LimitExceeded) as info5:
        server5.receive_data(encode_message(Message(MessageType.DATA_AMF0, 1, 0, bytes(100_000), 5), 4096))
    assert info5.value.reason == "message-size"
    server4, _ = _connected_pair()
    many = b"".join(encode_message(Message(MessageType.COMMAND_AMF0, 0, 0,
                                           amf0.encode_all("createStream", float(i), None), 3), 128)
                    for i in range(10, 30))
    with pytest.raises(LimitExceeded) as info4:
        server4.receive_data(many)
    assert info4.value.reason == "streams"


def test_ping_and_acknowledgement() -> None:
    server, client = _connected_pair()
    window = encode_message(Message(MessageType.WINDOW_ACK_SIZE, 0, 0, (5000).to_bytes(4, "big"), 2), 4096)
    ping = encode_message(Message(MessageType.USER_CONTROL, 0, 0, b"\x00\x06\x00\x00\x01\x02", 2), 4096)
    server.receive_data(window + ping + bytes(encode_message(
        Message(MessageType.AUDIO, 1, 0, b"\xaf\x01" + b"a" * 6000, 4), 4096)))
    reader = ChunkReader()
    reader.chunk_size = 4096
    replies = reader.receive_data(server.data_to_send())
    assert Message(MessageType.USER_CONTROL, 0, 0, b"\x00\x07\x00\x00\x01\x02", 2) in replies
    acks = [m for m in replies if m.type_id == MessageType.ACKNOWLEDGEMENT]
    assert len(acks) == 1 and int.from_bytes(acks[0].payload, "big") == server.reader.bytes_received


# --- Core's path rules -----------------------------------------------------------------------


@pytest.mark.parametrize(("app", "name", "required", "path", "token"), [
    ("live", "x", False, "/live/x", ""),
    ("", "x", False, "/x", ""),
    ("live", "x?token=abc", False, "/live/x", ""),
    ("live", "x?token=abc", True, "/live/x", "abc"),
    ("live", "x/abc", True, "/live/x", "abc"),  # last path element
    ("live/x", "abc", True, "/live/x", "abc"),
    ("live", "x", True, "/live", "x"),  # as Core: the last element is taken as the token
    ("a//b/", "/c", False, "/a/b/c", ""),
])
def test_resolve_request_as_core(app: str, name: str, required: bool, path: str, token: str) -> None:
    req = resolve_request(app, name, token_required=required)
    assert (req.path, req.token) == (path, token)


def test_placeholder_template_as_core() -> None:
    assert placeholder_template("", 1935, "/", "") == "rtmp://127.0.0.1:1935/{name}"
    assert placeholder_template("127.0.0.1", 1935, "/live", "t") == "rtmp://127.0.0.1:1935/live/{name}?token=t"
    assert placeholder_template("::1", 5, "/", "") == "rtmp://[::1]:5/{name}"


# --- channel fan-out rules -----------------------------------------------------------------

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


def test_digest_handshake_only_for_a_valid_client_digest() -> None:
    import hashlib
    import hmac

    from rtmp.handshake import CLIENT_PARTIAL_KEY, SERVER_KEY, SERVER_PARTIAL_KEY, find_digest

    c1 = bytearray(bytes(4) + b"\x09\x00\x7c\x02" + bytes(range(256)) * 6)[:HANDSHAKE_SIZE]
    plain = ServerHandshake()
    plain.receive_data(b"\x03" + bytes(c1))  # a version but no valid digest: simple answer
    assert not plain.complex
    pos = sum(c1[8:12]) % 728 + 12  # the digest position of scheme "base 8"
    c1[pos:pos + 32] = hmac.new(CLIENT_PARTIAL_KEY, bytes(c1[:pos] + c1[pos + 32:]), hashlib.sha256).digest()
    server = ServerHandshake()
    reply = server.receive_data(b"\x03" + bytes(c1))
    assert server.complex
    s1, s2 = reply[1:1 + HANDSHAKE_SIZE], reply[1 + HANDSHAKE_SIZE:]
    assert s1[4:8] != bytes(4) and find_digest(s1, SERVER_PARTIAL_KEY) is not None
    key = hmac.new(SERVER_KEY, bytes(c1[pos:pos + 32]), hashlib.sha256).digest()
    assert s2[-32:] == hmac.new(key, s2[:-32], hashlib.sha256).digest()


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


def test_replies_a_peer_never_reads_are_bounded() -> None:
    player = _player(max_queue_bytes=1000)
    for _ in range(150):
        player.push_control(b"x" * 18)  # e.g. ping responses
    assert player.dropped and player.queued_bytes == 0
