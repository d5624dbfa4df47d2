"""rtmp.connection: the sans-IO publish/play flows, protocol violations, ping/ack, bounded replies."""

from __future__ import annotations

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


from trio_core.rtmp.registry import Player  # noqa: E402


def _player(max_queue_bytes: int = 1 << 20, max_skips: int = 2) -> Player:
    return Player("x", 1, 4096, max_queue_bytes=max_queue_bytes, max_skips=max_skips)


def test_replies_a_peer_never_reads_are_bounded() -> None:
    player = _player(max_queue_bytes=1000)
    for _ in range(150):
        player.push_control(b"x" * 18)  # e.g. ping responses
    assert player.dropped and player.queued_bytes == 0
