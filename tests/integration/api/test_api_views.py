"""The hot API views: keep-alive connections are never closed by the server, and the shared
(cached) process views follow every change: progress ticks, ``PUT`` updates and commands.

Real server (``serve``), real FFmpeg lavfi processes.
"""

from __future__ import annotations

from pathlib import Path

import h11
import trio

from tests.helpers.api import Api, make_config, running_server, tiny_process, wait_for


async def _get(stream: trio.SocketStream, conn: h11.Connection, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    await stream.send_all(conn.send(h11.Request(method="GET", target=path,
                                                headers=[("Host", "127.0.0.1")])) or b"")
    await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
    status, headers, body = 0, {}, b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Response):
            status, headers = event.status_code, {k.lower(): v for k, v in event.headers}
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return status, headers, body
        elif isinstance(event, h11.ConnectionClosed):
            raise AssertionError("the server closed the connection")


async def test_keep_alive_connection_is_never_closed_after_many_requests(
        tmp_path: Path, ffmpeg: str) -> None:
    """hypercorn's default answered the 1000th request with ``Connection: close``."""
    async with running_server(make_config(tmp_path, ffmpeg)) as running:
        stream = await trio.open_tcp_stream("127.0.0.1", running.port)
        conn = h11.Connection(h11.CLIENT)
        try:
            for i in range(1100):
                status, headers, _ = await _get(stream, conn, "/api/v3/process")
                assert status == 200
                assert headers.get(b"connection", b"").lower() != b"close", f"request {i + 1}"
                assert conn.our_state is h11.DONE and conn.their_state is h11.DONE
                conn.start_next_cycle()
        finally:
            await stream.aclose()


async def test_process_views_follow_progress_updates_and_commands(
        tmp_path: Path, ffmpeg: str) -> None:
    async with running_server(make_config(tmp_path, ffmpeg)) as running:
        api = Api(running.url)
        assert (await api.post("/api/v3/process", tiny_process("views"))).status_code == 200

        async def frame() -> int:
            listing = (await api.get("/api/v3/process?filter=state")).json()
            return int(listing[0]["state"]["progress"]["frame"])

        first = await wait_for(frame, timeout=20)
        later = await wait_for(lambda: _more(frame, first), timeout=20)
        state = (await api.get("/api/v3/process/views/state")).json()
        assert state["progress"]["frame"] >= later  # the state route follows the ticks too

        resp = await api.put("/api/v3/process/views", tiny_process("views", reference="moved"))
        assert resp.status_code == 200, resp.text
        listing = (await api.get("/api/v3/process")).json()
        assert listing[0]["reference"] == "moved"
        assert listing[0]["config"]["reference"] == "moved"

        resp = await api.put("/api/v3/process/views/command", {"command": "stop"})
        assert resp.status_code == 200, resp.text

        async def stopped() -> bool:
            state = (await api.get("/api/v3/process/views/state")).json()
            listed = (await api.get("/api/v3/process?filter=state")).json()[0]["state"]
            return (state["exec"] == "finished" and state["progress"]["frame"] == 0
                    and listed["exec"] == "finished" and listed["progress"]["frame"] == 0)

        await wait_for(stopped, timeout=15)
        before = (await api.get("/api/v3/process?filter=report")).json()[0]["report"]
        runs = len(before["history"])  # the update restarted it: one run is history already
        assert before["prelude"]  # the stopped run's prelude, kept

        resp = await api.put("/api/v3/process/views/command", {"command": "start"})
        assert resp.status_code == 200, resp.text

        async def new_run() -> bool:  # the previous run moved to the history, in both views
            listed = (await api.get("/api/v3/process?filter=report")).json()[0]["report"]
            single = (await api.get("/api/v3/process/views/report")).json()
            return (len(listed["history"]) == runs + 1 and listed == single
                    and listed["history"][-1]["prelude"] == before["prelude"])

        await wait_for(new_run, timeout=15)


async def _more(frame: object, than: int) -> int:
    value = await frame()  # type: ignore[operator]
    return value if value > than else 0
