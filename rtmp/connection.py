"""RTMP connections (server and client role): handshake + chunk stream + commands, sans-IO.

Like h11: feed received bytes with ``receive_data(data) -> list[event]``, send whatever
``data_to_send()`` returns. Nothing here blocks, sleeps or does I/O, so cancellation is the
caller's business: drop the object and close the socket.

Server role (:class:`ServerConnection`): answers the handshake, ``connect`` (Window
Acknowledgement Size, Set Peer Bandwidth, Set Chunk Size, ``_result``), ``createStream``
(message stream ids 1, 2, … up to ``max_streams``), ``releaseStream``/``FCPublish``/
``FCUnpublish``/``FCSubscribe`` (``_result``), pings (User Control 6 -> 7) and
acknowledgements (when the peer announced a window). Decisions stay with the caller: a
``publish`` becomes :class:`PublishRequested`, answered with :meth:`ServerConnection.accept_publish`
or :meth:`ServerConnection.reject` (an ``onStatus`` with level ``error``; close afterwards);
``play`` likewise (:class:`PlayRequested`). Media of a publishing stream arrives as
:class:`MediaReceived`, ``@setDataFrame``/``onMetaData`` as :class:`MetadataReceived`
(re-encoded as ``onMetaData`` for players); ``deleteStream``/``closeStream``/``FCUnpublish`` as
:class:`StreamDeleted`.

Client role (:class:`ClientConnection`): enough for tests and benchmarks — connect,
createStream, publish/play, send media; events :class:`Connected`, :class:`StreamCreated`,
:class:`StatusReceived`, media and metadata.

Limits: before a publish is accepted (and for players) messages are limited to
``COMMAND_MESSAGE_LIMIT`` (64 KiB); publishers may send up to ``max_message_size``; at most
``max_streams`` ``createStream`` per connection.

Errors: :class:`~rtmp.errors.RtmpError` for malformed input or protocol violations (commands
before ``connect``, publish/play on a stream that was never created, bogus AMF, …),
:class:`~rtmp.errors.LimitExceeded` for limits; after either, drop the connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import amf0
from .chunk import ChunkReader, ChunkWriter, Message, MessageType
from .errors import AmfError, LimitExceeded, RtmpError
from .handshake import ClientHandshake, ServerHandshake

__all__ = [
    "AUDIO_CSID", "DATA_CSID", "VIDEO_CSID", "ClientConnection", "Connected", "ConnectRequested",
    "MediaReceived", "MetadataReceived", "PlayRequested", "PublishRequested", "ServerConnection",
    "StatusReceived", "StreamCreated", "StreamDeleted",
]

CONTROL_CSID, COMMAND_CSID, AUDIO_CSID, DATA_CSID, VIDEO_CSID = 2, 3, 4, 5, 6
UC_STREAM_BEGIN, UC_STREAM_EOF, UC_PING_REQUEST, UC_PING_RESPONSE = 0, 1, 6, 7
COMMAND_MESSAGE_LIMIT = 64 * 1024  # largest message accepted before a publish is accepted


# --- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectRequested:
    """The peer sent ``connect`` (already answered with success)."""

    app: str
    tc_url: str
    properties: dict[str, Any]


@dataclass(frozen=True)
class PublishRequested:
    stream_id: int
    name: str  # the publishing name as sent (may carry "?query")
    publish_type: str  # "live", "record", "append"


@dataclass(frozen=True)
class PlayRequested:
    stream_id: int
    name: str


@dataclass(frozen=True, slots=True)
class MediaReceived:
    stream_id: int
    type_id: int  # MessageType.AUDIO / VIDEO
    timestamp: int
    payload: bytes


@dataclass(frozen=True)
class MetadataReceived:
    stream_id: int
    payload: bytes  # AMF0 "onMetaData", {…} ready to send to players
    values: dict[str, Any]


@dataclass(frozen=True)
class StreamDeleted:
    stream_id: int


@dataclass(frozen=True)
class Connected:
    """Client role: the server accepted ``connect``."""

    properties: dict[str, Any]
    info: dict[str, Any]


@dataclass(frozen=True)
class StreamCreated:
    """Client role: ``createStream`` answered."""

    stream_id: int


@dataclass(frozen=True)
class StatusReceived:
    """An ``onStatus`` (client role) or an ``_error`` reply."""

    stream_id: int
    level: str
    code: str
    description: str


def _status(level: str, code: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"level": level, "code": code, "description": description, **extra}


def _user_control(event: int, value: int) -> Message:
    return Message(MessageType.USER_CONTROL, 0, 0,
                   event.to_bytes(2, "big") + value.to_bytes(4, "big"), CONTROL_CSID)


def _control(type_id: int, payload: bytes) -> Message:
    return Message(type_id, 0, 0, payload, CONTROL_CSID)


def _amf_body(msg: Message) -> bytes:
    if msg.type_id in (MessageType.COMMAND_AMF3, MessageType.DATA_AMF3):
        # AMF3 command/data messages start with a format byte; 0 = the rest is AMF0
        if not msg.payload or msg.payload[0] != 0:
            raise AmfError("amf3", "AMF3-encoded commands are not supported")
        return msg.payload[1:]
    return msg.payload


class _Endpoint:
    """What both roles share: chunking, control messages, acknowledgements, output buffer."""

    def __init__(self, *, chunk_size: int, max_message_size: int) -> None:
        self.reader = ChunkReader(max_message_size=max_message_size)
        self.writer = ChunkWriter()
        self._out: list[bytes] = []
        self._out_chunk_size = chunk_size
        self.peer_window = 0
        self._last_ack = 0

    def data_to_send(self) -> bytes:
        data = b"".join(self._out)
        self._out.clear()
        return data

    def send(self, msg: Message) -> None:
        self._out.append(self.writer.encode(msg))

    def send_raw(self, data: bytes) -> None:
        """Queue already-chunked bytes (e.g. a fan-out's shared encoding)."""
        self.writer.bytes_sent += len(data)
        self._out.append(data)

    def send_command(self, stream_id: int, *values: Any, csid: int = COMMAND_CSID) -> None:
        self.send(Message(MessageType.COMMAND_AMF0, stream_id, 0, amf0.encode_all(*values), csid))

    def set_chunk_size(self, size: int) -> None:
        self.send(_control(MessageType.SET_CHUNK_SIZE, size.to_bytes(4, "big")))
        self.writer.chunk_size = size

    @property
    def chunk_size(self) -> int:
        """The chunk size used for what this side sends."""
        return self.writer.chunk_size

    def _messages(self, data: bytes) -> list[Message]:
        return self.reader.receive_data(data)

    def _maybe_ack(self) -> None:
        """Acknowledge once the peer's announced window of bytes has arrived."""
        if self.peer_window and self.reader.bytes_received - self._last_ack >= self.peer_window:
            self._last_ack = self.reader.bytes_received
            self.send(_control(MessageType.ACKNOWLEDGEMENT,
                               (self._last_ack & 0xFFFFFFFF).to_bytes(4, "big")))

    def _handle_control(self, msg: Message) -> bool:
        """Handle protocol control messages; True when ``msg`` was one."""
        t = msg.type_id
        if t in (MessageType.SET_CHUNK_SIZE, MessageType.ABORT, MessageType.ACKNOWLEDGEMENT,
                 MessageType.SET_PEER_BANDWIDTH):
            return True
        if t == MessageType.WINDOW_ACK_SIZE:
            if len(msg.payload) < 4:
                raise RtmpError("window-short", "Window Acknowledgement Size shorter than 4 bytes")
            self.peer_window = int.from_bytes(msg.payload[:4], "big")
            return True
        if t == MessageType.USER_CONTROL:
            if len(msg.payload) < 2:
                raise RtmpError("user-control-short", "User Control message shorter than 2 bytes")
            event = int.from_bytes(msg.payload[:2], "big")
            if event == UC_PING_REQUEST and len(msg.payload) >= 6:
                self.send(_user_control(UC_PING_RESPONSE, int.from_bytes(msg.payload[2:6], "big")))
            return True
        return False

    @staticmethod
    def _decode_command(msg: Message) -> tuple[str, float, list[Any]]:
        values = amf0.decode_all(_amf_body(msg))
        if not values or not isinstance(values[0], str):
            raise AmfError("amf-command", "command message without a command name")
        txn = values[1] if len(values) > 1 and isinstance(values[1], float) else 0.0
        return values[0], txn, values[2:]


# --- server role -------------------------------------------------------------------------------


class ServerConnection(_Endpoint):
    """One accepted RTMP connection, server side."""

    def __init__(
        self, *, chunk_size: int = 4096, window_ack_size: int = 2_500_000, max_streams: int = 8,
        max_message_size: int = 8 * 1024 * 1024, epoch_ms: int = 0,
    ) -> None:
        super().__init__(chunk_size=chunk_size, max_message_size=max_message_size)
        # until a publish is accepted only commands arrive: keep the peer to small messages
        self.media_limits = (max_message_size, self.reader.max_pending_bytes)
        self.reader.max_message_size = min(max_message_size, COMMAND_MESSAGE_LIMIT)
        self.reader.max_pending_bytes = min(self.reader.max_pending_bytes, 4 * COMMAND_MESSAGE_LIMIT)
        self.handshake: ServerHandshake | None = ServerHandshake(epoch_ms)
        self.window_ack_size = window_ack_size
        self.max_streams = max_streams
        self.connected = False
        self.app = ""
        self.tc_url = ""
        self.streams: set[int] = set()
        self.publishing: set[int] = set()
        self.playing: set[int] = set()
        self._next_stream = 1

    @property
    def handshake_done(self) -> bool:
        return self.handshake is None

    def receive_data(self, data: bytes) -> list[Any]:
        if self.handshake is not None:
            reply = self.handshake.receive_data(data)
            if reply:
                self._out.append(reply)
            if not self.handshake.done:
                return []
            data = self.handshake.leftover
            self.handshake = None
            if not data:
                return []
        events: list[Any] = []
        for msg in self._messages(data):
            self._handle(msg, events)
        self._maybe_ack()
        return events

    def _handle(self, msg: Message, events: list[Any]) -> None:
        t = msg.type_id
        if t in (MessageType.AUDIO, MessageType.VIDEO):
            if msg.stream_id in self.publishing and msg.payload:
                events.append(MediaReceived(msg.stream_id, t, msg.timestamp, msg.payload))
            return
        if self._handle_control(msg):
            return
        if t in (MessageType.COMMAND_AMF0, MessageType.COMMAND_AMF3):
            self._command(msg, events)
        elif t in (MessageType.DATA_AMF0, MessageType.DATA_AMF3):
            self._data(msg, events)
        # shared objects, aggregates and unknown types are ignored

    def _command(self, msg: Message, events: list[Any]) -> None:
        name, txn, args = self._decode_command(msg)
        if name == "connect":
            if self.connected:
                raise RtmpError("connect-twice", "second connect on one connection")
            props = args[0] if args and isinstance(args[0], dict) else {}
            app = props.get("app", "")
            tc_url = props.get("tcUrl", "")
            self.app = app if isinstance(app, str) else ""
            self.tc_url = tc_url if isinstance(tc_url, str) else ""
            self.connected = True
            self.send(_control(MessageType.WINDOW_ACK_SIZE, self.window_ack_size.to_bytes(4, "big")))
            self.send(_control(MessageType.SET_PEER_BANDWIDTH,
                               self.window_ack_size.to_bytes(4, "big") + b"\x02"))
            self.set_chunk_size(self._out_chunk_size)
            encoding = props.get("objectEncoding", 0.0)
            self.send_command(0, "_result", txn,
                              {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0},
                              _status("status", "NetConnection.Connect.Success",
                                      "Connection succeeded.",
                                      objectEncoding=encoding if isinstance(encoding, float) else 0.0))
            events.append(ConnectRequested(self.app, self.tc_url, props))
            return
        if not self.connected:
            raise RtmpError("not-connected", f"command {name!r} before connect")
        if name == "createStream":
            if len(self.streams) >= self.max_streams:
                raise LimitExceeded("streams", f"more than {self.max_streams} streams on one connection")
            stream_id = self._next_stream
            self._next_stream += 1
            self.streams.add(stream_id)
            self.send_command(0, "_result", txn, None, float(stream_id))
        elif name in ("releaseStream", "FCPublish", "FCSubscribe", "FCUnpublish"):
            if txn:
                self.send_command(0, "_result", txn, None, amf0.UNDEFINED)
            if name == "FCUnpublish":
                for stream_id in sorted(self.publishing):
                    self.publishing.discard(stream_id)
                    events.append(StreamDeleted(stream_id))
        elif name in ("publish", "play"):
            stream_id = msg.stream_id
            if stream_id not in self.streams:
                raise RtmpError("stream-unknown", f"{name} on stream {stream_id} that was never created")
            if stream_id in self.publishing or stream_id in self.playing:
                raise RtmpError("stream-busy", f"{name} on stream {stream_id} that is already in use")
            stream_name = args[1] if len(args) > 1 else None
            if not isinstance(stream_name, str):
                raise AmfError("amf-command", f"{name} without a stream name")
            if name == "publish":
                kind = args[2] if len(args) > 2 and isinstance(args[2], str) else "live"
                events.append(PublishRequested(stream_id, stream_name, kind))
            else:
                events.append(PlayRequested(stream_id, stream_name))
        elif name in ("deleteStream", "closeStream"):
            stream_id = msg.stream_id
            if name == "deleteStream" and len(args) > 1 and isinstance(args[1], float):
                stream_id = int(args[1])
            if stream_id in self.publishing or stream_id in self.playing:
                events.append(StreamDeleted(stream_id))
            self.publishing.discard(stream_id)
            self.playing.discard(stream_id)
            if name == "deleteStream":
                self.streams.discard(stream_id)
        # anything else (getStreamLength, _checkbw, pause, …) is ignored, as nginx-rtmp does

    def _data(self, msg: Message, events: list[Any]) -> None:
        if msg.stream_id not in self.publishing:
            return
        values = amf0.decode_all(_amf_body(msg))
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
            meta = dict(values[1])
            events.append(MetadataReceived(msg.stream_id, amf0.encode_all("onMetaData", values[1]), meta))

    # --- decisions -----------------------------------------------------------------------------

    def accept_publish(self, stream_id: int, name: str) -> None:
        """Tell the publisher to start (StreamBegin + ``NetStream.Publish.Start``); from now
        on messages up to ``max_message_size`` are accepted."""
        self.publishing.add(stream_id)
        self.reader.max_message_size, self.reader.max_pending_bytes = self.media_limits
        self.send(_user_control(UC_STREAM_BEGIN, stream_id))
        self.send_command(stream_id, "onStatus", 0.0, None,
                          _status("status", "NetStream.Publish.Start", f"{name} is now published.",
                                  details=name), csid=DATA_CSID)

    def accept_play(self, stream_id: int, name: str, metadata: bytes | None = None) -> None:
        """Start a player: StreamBegin, ``Play.Reset``/``Play.Start``, ``|RtmpSampleAccess``,
        then the stream's ``onMetaData`` when given. Media follows via :meth:`send_raw`."""
        self.playing.add(stream_id)
        self.send(_user_control(UC_STREAM_BEGIN, stream_id))
        self.send_command(stream_id, "onStatus", 0.0, None,
                          _status("status", "NetStream.Play.Reset", f"Playing and resetting {name}.",
                                  details=name), csid=DATA_CSID)
        self.send_command(stream_id, "onStatus", 0.0, None,
                          _status("status", "NetStream.Play.Start", f"Started playing {name}.",
                                  details=name), csid=DATA_CSID)
        self.send(Message(MessageType.DATA_AMF0, stream_id, 0,
                          amf0.encode_all("|RtmpSampleAccess", True, True), DATA_CSID))
        if metadata:
            self.send(Message(MessageType.DATA_AMF0, stream_id, 0, metadata, DATA_CSID))

    def end_play(self, stream_id: int, name: str) -> None:
        """The stream ended: StreamEOF and ``NetStream.Play.UnpublishNotify``."""
        self.playing.discard(stream_id)
        self.send(_user_control(UC_STREAM_EOF, stream_id))
        self.send_command(stream_id, "onStatus", 0.0, None,
                          _status("status", "NetStream.Play.UnpublishNotify",
                                  f"{name} is now unpublished.", details=name), csid=DATA_CSID)

    def reject(self, stream_id: int, code: str, description: str) -> None:
        """Refuse a publish/play with an ``onStatus`` of level ``error`` (then close)."""
        self.send_command(stream_id, "onStatus", 0.0, None,
                          _status("error", code, description), csid=DATA_CSID)


# --- client role -------------------------------------------------------------------------------


@dataclass
class _Pending:
    name: str
    stream_id: int = 0


class ClientConnection(_Endpoint):
    """Client side (tests, benchmarks): ``start()`` returns C0+C1; then ``receive_data``."""

    def __init__(self, *, chunk_size: int = 4096, max_message_size: int = 16 * 1024 * 1024,
                 epoch_ms: int = 0) -> None:
        super().__init__(chunk_size=chunk_size, max_message_size=max_message_size)
        self.handshake: ClientHandshake | None = ClientHandshake(epoch_ms)
        self._txn = 1
        self._pending: dict[float, _Pending] = {}
        self._queued: list[Message] = []
        self.connected = False
        self.media_bytes = 0
        self.keep_media = True

    def start(self) -> bytes:
        assert self.handshake is not None
        return self.handshake.start()

    def _next_txn(self, name: str, stream_id: int = 0) -> float:
        txn = float(self._txn)
        self._txn += 1
        self._pending[txn] = _Pending(name, stream_id)
        return txn

    def _queue(self, msg: Message) -> None:
        if self.handshake is None:
            self.send(msg)
        else:
            self._queued.append(msg)

    def _command_msg(self, stream_id: int, *values: Any, csid: int = COMMAND_CSID) -> Message:
        return Message(MessageType.COMMAND_AMF0, stream_id, 0, amf0.encode_all(*values), csid)

    def connect(self, app: str, tc_url: str) -> None:
        """Send ``connect`` (queued until the handshake is done) after our chunk size."""
        self._queue(_control(MessageType.SET_CHUNK_SIZE, self._out_chunk_size.to_bytes(4, "big")))
        txn = self._next_txn("connect")
        self._queue(self._command_msg(0, "connect", txn, {
            "app": app, "type": "nonprivate", "flashVer": "FMLE/3.0 (compatible; trio-core)",
            "tcUrl": tc_url}))

    def create_stream(self) -> None:
        self._queue(self._command_msg(0, "createStream", self._next_txn("createStream"), None))

    def publish(self, stream_id: int, name: str) -> None:
        self._queue(self._command_msg(stream_id, "publish", 0.0, None, name, "live", csid=8))

    def play(self, stream_id: int, name: str) -> None:
        self._queue(self._command_msg(stream_id, "play", 0.0, None, name, -2000.0, csid=8))

    def delete_stream(self, stream_id: int) -> None:
        self._queue(self._command_msg(0, "deleteStream", 0.0, None, float(stream_id)))

    def send_media(self, stream_id: int, type_id: int, timestamp: int, payload: bytes) -> None:
        csid = VIDEO_CSID if type_id == MessageType.VIDEO else AUDIO_CSID
        self._queue(Message(type_id, stream_id, timestamp, payload, csid))

    def send_metadata(self, stream_id: int, values: dict[str, Any]) -> None:
        self._queue(Message(MessageType.DATA_AMF0, stream_id, 0,
                            amf0.encode_all("@setDataFrame", "onMetaData", values), DATA_CSID))

    def receive_data(self, data: bytes) -> list[Any]:
        if self.handshake is not None:
            reply = self.handshake.receive_data(data)
            if not self.handshake.done:
                return []
            self._out.append(reply)
            data = self.handshake.leftover
            self.handshake = None
            for msg in self._queued:
                if msg.type_id == MessageType.SET_CHUNK_SIZE:
                    self.send(msg)
                    self.writer.chunk_size = int.from_bytes(msg.payload, "big")
                else:
                    self.send(msg)
            self._queued.clear()
            if not data:
                return []
        events: list[Any] = []
        for msg in self._messages(data):
            t = msg.type_id
            if t in (MessageType.AUDIO, MessageType.VIDEO):
                self.media_bytes += len(msg.payload)
                if self.keep_media:
                    events.append(MediaReceived(msg.stream_id, t, msg.timestamp, msg.payload))
            elif self._handle_control(msg):
                continue
            elif t in (MessageType.COMMAND_AMF0, MessageType.COMMAND_AMF3):
                self._client_command(msg, events)
            elif t in (MessageType.DATA_AMF0, MessageType.DATA_AMF3):
                values = amf0.decode_all(_amf_body(msg))
                if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
                    events.append(MetadataReceived(msg.stream_id, msg.payload, dict(values[1])))
        self._maybe_ack()
        return events

    def _client_command(self, msg: Message, events: list[Any]) -> None:
        name, txn, args = self._decode_command(msg)
        if name in ("_result", "_error"):
            pending = self._pending.pop(txn, None)
            if pending is None:
                return
            info = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
            if name == "_error":
                events.append(StatusReceived(0, str(info.get("level", "error")),
                                             str(info.get("code", "")), str(info.get("description", ""))))
            elif pending.name == "connect":
                self.connected = True
                props = args[0] if args and isinstance(args[0], dict) else {}
                events.append(Connected(props, info))
            elif pending.name == "createStream":
                sid = args[1] if len(args) > 1 and isinstance(args[1], float) else 0.0
                events.append(StreamCreated(int(sid)))
        elif name == "onStatus":
            info = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
            events.append(StatusReceived(msg.stream_id, str(info.get("level", "")),
                                         str(info.get("code", "")), str(info.get("description", ""))))

