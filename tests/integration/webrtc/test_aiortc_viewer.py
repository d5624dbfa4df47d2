"""Self-tests of the aiortc viewer subprocess (tests/helpers/aiortc_viewer.py).

Its real use is in the forwarder/WHEP integration tests; these check the parts those tests
rely on without our forwarder: argument parsing, the offer it makes (recvonly, H264 offered,
loopback-only candidates), error reporting, and the WHEP POST/DELETE exchange against a
minimal trio HTTP responder.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial

import pytest
import trio

from tests.helpers.aiortc_viewer import main, run_aiortc_viewer


@pytest.mark.parametrize(
    "argv",
    [[], ["--whep", "http://127.0.0.1:1/", "--stdio"], ["--stdio", "--video-only", "--audio-only"],
     ["--stdio", "--duration", "x"]],
)
def test_bad_arguments_exit(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


async def test_whep_to_a_closed_port_fails_fast() -> None:
    # a bound TCP socket that never listens: connecting is refused, and no one can take the port
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        t0 = time.monotonic()
        result = await run_aiortc_viewer(["--whep", f"http://127.0.0.1:{port}/whep/x"],
                                         timeout=30)
    assert result["connected"] is False
    assert result["error"] and "refused" in result["error"].lower(), result
    assert result["delete_status"] is None
    assert time.monotonic() - t0 < 15


def _candidate_addresses(sdp: str) -> set[str]:
    return {line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")}


@pytest.mark.parametrize(("flag", "kinds"), [(None, ["video", "audio"]),
                                             ("--video-only", ["video"]),
                                             ("--audio-only", ["audio"])])
async def test_stdio_offer_is_recvonly_loopback_only(flag: str | None, kinds: list[str]) -> None:
    offers: list[str] = []

    async def answer(offer: str) -> str:
        offers.append(offer)
        return "not an SDP answer"

    args = ["--stdio", "--connect-timeout", "2"] + ([flag] if flag else [])
    result = await run_aiortc_viewer(args, answer, timeout=30)
    assert result["connected"] is False and result["error"], result
    (offer,) = offers
    assert re.findall(r"^m=(\w+)", offer, re.M) == kinds
    assert offer.count("a=recvonly") == len(kinds)
    assert _candidate_addresses(offer) == {"127.0.0.1"}  # aioice limited to loopback
    if "video" in kinds:
        assert "H264/90000" in offer and "packetization-mode=1" in offer


# --- WHEP against a minimal HTTP responder ----------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class TinyHttp:
    """Answers every request from ``responses[method]`` = (status, headers, body)."""

    responses: dict[str, tuple[int, dict[str, str], bytes]]
    requests: list[Request] = field(default_factory=list)

    async def handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                data += chunk
            head, body = data.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip()
                       for k, v in (line.split(":", 1) for line in lines[1:])}
            while len(body) < int(headers.get("content-length", "0")):
                body += await stream.receive_some(65536)
            self.requests.append(Request(method, path, headers, body))
            status, extra, payload = self.responses.get(method, (405, {}, b""))
            out = [f"HTTP/1.1 {status} X", f"Content-Length: {len(payload)}", "Connection: close",
                   *(f"{k}: {v}" for k, v in extra.items())]
            await stream.send_all(("\r\n".join(out) + "\r\n\r\n").encode() + payload)


async def _serve(nursery: trio.Nursery, http: TinyHttp) -> int:
    listeners = await nursery.start(partial(trio.serve_tcp, http.handle, 0, host="127.0.0.1"))
    return listeners[0].socket.getsockname()[1]


async def test_whep_post_then_delete_the_location() -> None:
    http = TinyHttp({
        "POST": (201, {"Location": "/whep/sessions/s3cr3t", "Content-Type": "application/sdp"},
                 b"v=0\r\nthis is no answer\r\n"),
        "DELETE": (204, {}, b""),
    })
    async with trio.open_nursery() as nursery:
        port = await _serve(nursery, http)
        result = await run_aiortc_viewer(
            ["--whep", f"http://127.0.0.1:{port}/whep/cam", "--token", "tok", "--video-only"],
            timeout=30)
        nursery.cancel_scope.cancel()
    assert result["connected"] is False and result["error"], result
    assert result["delete_status"] == 204
    post, delete = http.requests
    assert (post.method, post.path) == ("POST", "/whep/cam")
    assert post.headers["content-type"] == "application/sdp"
    assert post.headers["authorization"] == "Bearer tok"
    assert post.body.startswith(b"v=0") and b"m=video" in post.body and b"m=audio" not in post.body
    assert (delete.method, delete.path) == ("DELETE", "/whep/sessions/s3cr3t")
    assert delete.headers["authorization"] == "Bearer tok"


async def test_whep_refusal_is_reported_without_delete() -> None:
    http = TinyHttp({"POST": (409, {"Retry-After": "1"}, b"not live yet")})
    async with trio.open_nursery() as nursery:
        port = await _serve(nursery, http)
        result = await run_aiortc_viewer(["--whep", f"http://127.0.0.1:{port}/whep/cam"],
                                         timeout=30)
        nursery.cancel_scope.cancel()
    assert result["connected"] is False
    assert "409" in result["error"] and "not live yet" in result["error"], result
    assert result["delete_status"] is None
    assert [r.method for r in http.requests] == ["POST"]


# --- end to end against an independent aiortc sender ------------------------------------------


async def test_viewer_decodes_from_an_aiortc_sender() -> None:
    """Viewer (--stdio) ↔ tests/helpers/aiortc_sender.py, both subprocesses: proves the viewer
    connects, decodes video and audio and reports sizes/timings, independent of our code."""
    argv = [sys.executable, "-m", "tests.helpers.aiortc_sender"]
    async with trio.open_nursery() as nursery:
        sender: trio.Process = await nursery.start(partial(
            trio.run_process, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, check=False))
        assert sender.stdin is not None and sender.stdout is not None
        sender_out = sender.stdout

        async def answer(offer: str) -> str:
            assert sender.stdin is not None
            await sender.stdin.send_all(json.dumps({"offer": offer}).encode() + b"\n")
            line = b""
            while not line.endswith(b"\n"):
                chunk = await sender_out.receive_some(65536)
                assert chunk, "sender exited"
                line += chunk
            return json.loads(line)["answer"]

        result = await run_aiortc_viewer(["--stdio", "--duration", "3"], answer, timeout=60)
        await sender.stdin.aclose()  # the sender closes its peer connection and exits
        with trio.fail_after(10):
            await sender.wait()
    assert result["error"] is None, result
    assert result["connected"] is True and result["ice_state"] == "connected", result
    assert (result["width"], result["height"]) == (320, 240)
    assert result["video_frames"] >= 45, result  # 30 fps for 3 s, minus start-up
    assert result["audio_samples"] >= 48000, result  # ≥ 1 s of decoded Opus
    assert result["first_frame_ms"] is not None and result["first_frame_ms"] < 5000
