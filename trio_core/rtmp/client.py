"""A small trio RTMP client over :class:`rtmp.connection.ClientConnection` (tests, benchmarks).

``await RtmpClient.open(host, port, app)`` connects, shakes hands and sends ``connect`` +
``createStream``; then :meth:`RtmpClient.publish` or :meth:`RtmpClient.play` (both wait for
the server's ``onStatus`` and raise :class:`RtmpRefused` on level ``error``).
:meth:`RtmpClient.receive_events` returns what arrives. Every call can be cancelled; :meth:`aclose`
closes the socket. One task may read and one may send at a time (trio's stream rules).
"""

from __future__ import annotations

from typing import Any

import trio

from rtmp.connection import ClientConnection, Connected, StatusReceived, StreamCreated

__all__ = ["RtmpClient", "RtmpRefused"]


class RtmpRefused(Exception):
    """The server answered publish/play with an error status (``code`` says which)."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


class RtmpClient:
    def __init__(self, stream: trio.abc.Stream, conn: ClientConnection) -> None:
        self.stream = stream
        self.conn = conn
        self.stream_id = 0
        self._backlog: list[Any] = []
        self.bytes_received = 0

    @classmethod
    async def open(cls, host: str, port: int, app: str, *, timeout: float = 10.0) -> RtmpClient:
        stream = await trio.open_tcp_stream(host, port)
        conn = ClientConnection()
        client = cls(stream, conn)
        try:
            with trio.fail_after(timeout):
                await stream.send_all(conn.start())
                conn.connect(app, f"rtmp://{host}:{port}/{app}")
                conn.create_stream()
                while not client.stream_id:
                    for event in await client.receive_events():
                        if isinstance(event, StreamCreated):
                            client.stream_id = event.stream_id
                        elif isinstance(event, StatusReceived) and event.level == "error":
                            raise RtmpRefused(event.code, event.description)
                        elif not isinstance(event, Connected):
                            client._backlog.append(event)
        except BaseException:
            await stream.aclose()
            raise
        return client

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            await self.stream.send_all(data)

    async def receive_events(self) -> list[Any]:
        """The next batch of events (queued ones first); raises EOFError when the server closed."""
        if self._backlog:
            events, self._backlog = self._backlog, []
            return events
        await self.flush()
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError("the server closed the connection")
        self.bytes_received += len(data)
        events = self.conn.receive_data(data)
        await self.flush()
        return events

    async def _wait_status(self, ok_code: str, timeout: float) -> None:
        with trio.fail_after(timeout):
            while True:
                try:
                    events = await self.receive_events()
                except EOFError:
                    raise RtmpRefused("closed", "the server closed the connection") from None
                for i, event in enumerate(events):
                    if isinstance(event, StatusReceived):
                        if event.level == "error":
                            raise RtmpRefused(event.code, event.description)
                        if event.code == ok_code:
                            self._backlog.extend(events[i + 1:])
                            return
                    else:
                        self._backlog.append(event)

    async def publish(self, name: str, *, timeout: float = 10.0) -> None:
        self.conn.publish(self.stream_id, name)
        await self._wait_status("NetStream.Publish.Start", timeout)

    async def play(self, name: str, *, timeout: float = 10.0) -> None:
        self.conn.play(self.stream_id, name)
        await self._wait_status("NetStream.Play.Start", timeout)

    async def send_media(self, type_id: int, timestamp: int, payload: bytes) -> None:
        self.conn.send_media(self.stream_id, type_id, timestamp, payload)
        await self.flush()

    async def aclose(self) -> None:
        await self.stream.aclose()
