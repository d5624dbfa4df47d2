"""Property tests: no RTMP parser lets anything but RtmpError escape on hostile input.

Covers AMF0, the chunk reader, the handshake, media classification, both connection roles
(with a valid handshake in front, so the fuzz reaches commands and chunks) and the channel
fan-out fed with arbitrary media bodies.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtmp import amf0
from rtmp.chunk import ChunkReader, Message, MessageType, encode_message
from rtmp.connection import ClientConnection, ServerConnection
from rtmp.errors import RtmpError
from rtmp.handshake import ServerHandshake
from rtmp.media import parse_audio, parse_video
from tests.helpers.fuzz import mutated_bytes
from trio_core.rtmp.registry import Channel, Player

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _client_session() -> tuple[bytes, bytes]:
    """(handshake bytes a client sends, the command/media stream that follows)."""
    server, client = ServerConnection(), ClientConnection()
    client.connect("live", "rtmp://h/live")
    client.create_stream()
    hello = client.start()
    server_reply = server.receive_data(hello) or server.data_to_send()
    del server_reply
    client.receive_data(server.data_to_send())
    c2_and_cmds = client.data_to_send()
    c2, cmds = c2_and_cmds[:1536], c2_and_cmds[1536:]
    client.publish(1, "x?token=abc")
    client.send_metadata(1, {"width": 320.0, "videocodecid": 7.0})
    client.send_media(1, MessageType.VIDEO, 0, b"\x17\x00\x00\x00\x00cfg")
    client.send_media(1, MessageType.VIDEO, 40, b"\x17\x01" + b"k" * 5000)
    client.send_media(1, MessageType.AUDIO, 41, b"\xaf\x01aa")
    client.delete_stream(1)
    return hello + c2, cmds + client.data_to_send()


HELLO, SESSION = _client_session()
COMMAND = amf0.encode_all("connect", 1.0, {"app": "live", "tcUrl": "rtmp://h/live",
                                           "list": [1.0, None], "m": amf0.EcmaArray(a=1.0)})


def _server_with_handshake() -> ServerConnection:
    server = ServerConnection()
    server.receive_data(HELLO)
    server.data_to_send()
    return server


@FUZZ
@given(st.one_of(st.binary(max_size=400), mutated_bytes(COMMAND)))
def test_amf0_only_raises_amf_errors(data: bytes) -> None:
    try:
        amf0.decode_all(data)
    except RtmpError:
        pass


@FUZZ
@given(st.one_of(st.binary(max_size=2000), mutated_bytes(SESSION)), st.integers(1, 64))
def test_chunk_reader_only_raises_rtmp_errors(data: bytes, step: int) -> None:
    reader = ChunkReader(max_message_size=64 * 1024)
    try:
        for i in range(0, len(data), step):
            for msg in reader.receive_data(data[i:i + step]):
                assert len(msg.payload) <= 64 * 1024
    except RtmpError:
        pass


@FUZZ
@given(st.binary(max_size=4000))
def test_handshake_only_raises_rtmp_errors(data: bytes) -> None:
    try:
        ServerHandshake().receive_data(data)
    except RtmpError:
        pass


@FUZZ
@given(st.one_of(st.binary(max_size=3000), mutated_bytes(SESSION)), st.integers(1, 512))
def test_server_connection_only_raises_rtmp_errors(data: bytes, step: int) -> None:
    server = _server_with_handshake()
    try:
        for i in range(0, len(data), step):
            for event in server.receive_data(data[i:i + step]):
                if type(event).__name__ == "PublishRequested":
                    server.accept_publish(event.stream_id, event.name)
            server.data_to_send()
    except RtmpError:
        pass


@FUZZ
@given(mutated_bytes(HELLO + SESSION))
def test_server_connection_with_mutated_handshake(data: bytes) -> None:
    try:
        ServerConnection().receive_data(data)
    except RtmpError:
        pass


@FUZZ
@given(st.binary(max_size=3000))
def test_client_connection_only_raises_rtmp_errors(data: bytes) -> None:
    client = ClientConnection()
    client.start()
    try:
        client.receive_data(b"\x03" + bytes(3072) + data)
    except RtmpError:
        pass


@FUZZ
@given(st.lists(st.tuples(st.sampled_from([8, 9]), st.integers(0, 2**32 - 1),
                          st.binary(min_size=0, max_size=64)), max_size=40))
def test_channel_accepts_any_media_bodies(messages: list[tuple[int, int, bytes]]) -> None:
    ch = Channel("/x")
    player = Player("x", 1, 4096, max_queue_bytes=2000, max_skips=2)
    ch.add_player(player)
    for type_id, ts, body in messages:
        ch.on_media(type_id, ts, body)
        parse = parse_video if type_id == 9 else parse_audio
        try:
            parse(body)
        except RtmpError:
            pass
    reader = ChunkReader()
    reader.chunk_size = 4096
    for msg in reader.receive_data(player.take()):  # whatever was queued is well-formed
        assert msg.type_id in (8, 9)


def test_encode_message_round_trips() -> None:
    msg = Message(MessageType.VIDEO, 1, 123, b"x" * 10000, 6)
    reader = ChunkReader()
    assert reader.receive_data(encode_message(msg, 128)) == [msg]
