"""An independent WHIP publisher (aiortc, full ICE, controlling) that can restart ICE.

aiortc is asyncio, so it never runs inside the trio test process: tests start this module
as a subprocess (:func:`aiortc_publisher`). It POSTs a sendonly offer (aiortc's H264/VP8 +
Opus; the test picture and tone of ``tests/helpers/aiortc_sender.py``) to ``--whip URL``
and prints ``{"published": {status, location, etag, links}}``. Then it reads commands,
one per line on stdin:

* ``restart``: an **ICE restart** as RFC 9725 §4.3 describes it, over a *new path*: new
  local ufrag/pwd, ``PATCH`` of the Location (``If-Match`` = the ETag) with them; the
  server's ``200`` sdpfrag gives its new ufrag/pwd; aiortc has no ``restartIce()``, so this
  module does what a full ICE agent does after a network change at the aioice level: a new
  local UDP socket (a new port: the "moved" address), a nominating Binding request from it
  with the new credentials, and the media switched to it (aioice's selected pair). It
  also sends one check with the *old* credentials from the old socket, which must now go
  unanswered. Prints ``{"restart": {status, etag, etag_changed, old_port, new_port,
  new_check_ok, old_check_answered, text}}``.
* ``stop`` (or EOF): DELETE the Location, print ``{"stopped": {video_frames_sent}}``, exit.

Only 127.0.0.1 is a network target here (aioice's host addresses are limited to loopback).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

SDPFRAG = "application/trickle-ice-sdpfrag"


def _http(method: str, url: str, body: str, headers: dict[str, str]
          ) -> tuple[int, dict[str, list[str]], str]:
    req = urllib.request.Request(url, data=body.encode() if body else None, method=method,
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            got: dict[str, list[str]] = {}
            for k, v in resp.headers.items():
                got.setdefault(k.lower(), []).append(v)
            return resp.status, got, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, {}, exc.read().decode(errors="replace")


async def _publisher(url: str, token: str) -> None:
    import aioice.ice
    from aioice import stun
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from tests.helpers.aiortc_sender import TestAudio, TestVideo

    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]
    loop = asyncio.get_running_loop()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    video = TestVideo()
    pc.addTransceiver(video, direction="sendonly")
    pc.addTransceiver(TestAudio(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    status, headers, text = await loop.run_in_executor(None, _http, "POST", url,
                                                       pc.localDescription.sdp,
                                                       {"Content-Type": "application/sdp", **auth})
    location = headers.get("location", [""])[0]
    if location.startswith("/"):
        location = re.match(r"https?://[^/]+", url).group(0) + location  # type: ignore[union-attr]
    etag = headers.get("etag", [""])[0]
    print(json.dumps({"published": {"status": status, "location": location, "etag": etag,
                                    "links": headers.get("link", []),
                                    "error": None if status == 201 else text}}), flush=True)
    if status != 201:
        return
    await pc.setRemoteDescription(RTCSessionDescription(text, "answer"))
    conn = pc.getTransceivers()[0].sender.transport.transport._connection

    async def restart() -> dict[str, Any]:
        nonlocal etag
        ufrag, pwd = secrets.token_hex(4), secrets.token_hex(16)
        frag = f"a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\n"
        code, got, body = await loop.run_in_executor(
            None, _http, "PATCH", location, frag,
            {"Content-Type": SDPFRAG, "If-Match": etag, **auth})
        out: dict[str, Any] = {"status": code, "text": body[:400]}
        if code != 200:
            return out
        new_etag = got.get("etag", [""])[0]
        out.update(etag=new_etag, etag_changed=new_etag != etag)
        etag = new_etag
        old_pair = conn._nominated[1]
        old_username, old_password = conn.remote_username, conn.remote_password
        conn._local_username, conn._local_password = ufrag, pwd
        conn.remote_username = re.search(r"a=ice-ufrag:(\S+)", body).group(1)  # type: ignore[union-attr]
        conn.remote_password = re.search(r"a=ice-pwd:(\S+)", body).group(1)  # type: ignore[union-attr]
        # the "moved" address: a new local socket, checked and nominated with the new
        # credentials, then carrying the media
        _, protocol = await loop.create_datagram_endpoint(
            lambda: aioice.ice.StunProtocol(conn), local_addr=("127.0.0.1", 0))
        protocol.local_candidate = old_pair.local_candidate
        conn._protocols.append(protocol)
        pair = aioice.ice.CandidatePair(protocol, old_pair.remote_candidate)
        request = conn.build_request(pair, nominate=True)
        try:
            await protocol.request(request, pair.remote_addr,
                                   integrity_key=conn.remote_password.encode())
            out["new_check_ok"] = True
        except stun.TransactionError as exc:
            out["new_check_ok"] = f"no answer: {exc}"
        conn._nominated[1] = pair
        out["old_port"] = old_pair.protocol.transport.get_extra_info("sockname")[1]
        out["new_port"] = protocol.transport.get_extra_info("sockname")[1]
        # the old credentials are forgotten by the server
        stale = stun.Message(message_method=stun.Method.BINDING,
                             message_class=stun.Class.REQUEST)
        stale.attributes["USERNAME"] = f"{old_username}:{ufrag}"
        stale.attributes["PRIORITY"] = 1
        stale.attributes["ICE-CONTROLLING"] = conn._tie_breaker
        try:
            await old_pair.protocol.request(stale, old_pair.remote_addr,
                                            integrity_key=old_password.encode(),
                                            retransmissions=1)
            out["old_check_answered"] = True
        except stun.TransactionError:
            out["old_check_answered"] = False
        return out

    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        command = line.strip()
        if command == "restart":
            print(json.dumps({"restart": await restart()}), flush=True)
            continue
        break
    code, _, _ = await loop.run_in_executor(None, _http, "DELETE", location, "", auth)
    print(json.dumps({"stopped": {"video_frames_sent": video._n, "delete_status": code}}),
          flush=True)
    await pc.close()


class Publisher:
    """The trio side: the subprocess and its JSON lines."""

    def __init__(self, proc: Any) -> None:
        self.proc = proc
        self._buf = b""

    async def message(self, key: str) -> Any:
        """The next JSON line that has ``key``."""
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                msg = json.loads(line)
                if key in msg:
                    return msg[key]
            chunk = await self.proc.stdout.receive_some(65536)
            if not chunk:
                raise EOFError(f"the aiortc publisher ended before {key!r}")
            self._buf += chunk

    async def command(self, command: str, reply: str) -> Any:
        await self.proc.stdin.send_all(command.encode() + b"\n")
        return await self.message(reply)


@asynccontextmanager
async def aiortc_publisher(url: str, token: str = "") -> AsyncIterator[Publisher]:
    """Run the publisher for the block (``stop`` at the end, then kill)."""
    import trio

    argv = [sys.executable, "-m", "tests.helpers.aiortc_publisher", "--whip", url]
    if token:
        argv += ["--token", token]
    async with trio.open_nursery() as nursery:
        proc = await nursery.start(lambda task_status: trio.run_process(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, check=False,
            task_status=task_status))
        try:
            yield Publisher(proc)
        finally:
            with trio.move_on_after(5):
                try:
                    await proc.stdin.send_all(b"stop\n")
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
            nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--whip", required=True)
    parser.add_argument("--token", default="")
    args = parser.parse_args()
    asyncio.run(_publisher(args.whip, args.token))


if __name__ == "__main__":
    main()
