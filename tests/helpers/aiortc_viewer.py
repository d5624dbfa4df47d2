"""An independent WebRTC viewer (aiortc) that *decodes* what it receives.

aiortc is asyncio, so it never runs inside the trio test process: tests start this module
as a subprocess (:func:`run_aiortc_viewer`). Two signalling modes:

* ``--whep URL``: POST a recvonly offer (H264 + Opus) as ``application/sdp``, expect ``201``
  with the answer and a ``Location``; at the end DELETE the Location.
* ``--stdio``: print ``{"offer": sdp}`` as one JSON line, read ``{"answer": sdp}`` from stdin
  (the trio test hands the offer to an in-process Forwarder).

Then it decodes for ``--duration`` seconds and prints one JSON line with the counts:
``connected``, ``video_frames``, ``width``, ``height``, ``audio_frames``, ``audio_samples``,
``first_frame_ms`` (from the answer to the first decoded frame), ``ice_state`` (the peer
connection state at the end of the receive window), ``delete_status``, ``error``.

With ``--progress`` it also prints ``{"progress": {...}}`` lines every 0.1 s while it
receives (``t`` = monotonic seconds, ``video_frames``, ``state`` = connectionState,
``dtls_state`` of the first transceiver's DTLS transport, ``ended`` = tracks that ended), for
tests that act while it watches (``run_aiortc_viewer(..., on_progress=...)``).

Only 127.0.0.1 may be a network target here: aioice's host-address discovery is limited to
loopback (or, with ``--host-address``, to one address on a veth into network namespaces the
test created) and no STUN server is used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any


def _loopback_only(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
    return ["127.0.0.1"]


def _http(method: str, url: str, body: bytes | None, headers: dict[str, str]
          ) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


async def _viewer(args: argparse.Namespace) -> dict[str, Any]:
    import aioice.ice
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError

    if args.host_address == "127.0.0.1":
        aioice.ice.get_host_addresses = _loopback_only  # type: ignore[assignment]
    else:  # an address of a veth into network namespaces the test created
        aioice.ice.get_host_addresses = (  # type: ignore[assignment]
            lambda use_ipv4=True, use_ipv6=True: [args.host_address])
    result: dict[str, Any] = {
        "connected": False, "video_frames": 0, "width": 0, "height": 0, "audio_frames": 0,
        "audio_samples": 0, "first_frame_ms": None, "delete_status": None, "error": None,
        "ice_state": None, "video_codec": None, "ended": 0,
    }
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    if not args.audio_only:
        transceiver = pc.addTransceiver("video", direction="recvonly")
        if args.video_codec:  # offer only this codec (and its rtx)
            from aiortc import RTCRtpReceiver

            caps = RTCRtpReceiver.getCapabilities("video").codecs
            transceiver.setCodecPreferences(
                [c for c in caps if c.mimeType.lower() in (f"video/{args.video_codec}",
                                                           "video/rtx")])
    if not args.video_only:
        pc.addTransceiver("audio", direction="recvonly")
    connected = asyncio.Event()
    answered_at = 0.0
    tasks: list[asyncio.Task[None]] = []

    @pc.on("connectionstatechange")
    def _state() -> None:
        result["ice_state"] = pc.connectionState
        if pc.connectionState == "connected":
            result["connected"] = True
            connected.set()

    async def consume(track: Any) -> None:
        try:
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    if result["video_frames"] == 0:
                        result["first_frame_ms"] = round((time.monotonic() - answered_at) * 1000)
                    result["video_frames"] += 1
                    result["width"], result["height"] = frame.width, frame.height
                    if result["video_codec"] is None:
                        result["video_codec"] = _receiver_codec(pc)
                else:
                    result["audio_frames"] += 1
                    result["audio_samples"] += frame.samples
        except MediaStreamError:
            result["ended"] += 1

    @pc.on("track")
    def _track(track: Any) -> None:
        tasks.append(asyncio.ensure_future(consume(track)))

    location = None
    loop = asyncio.get_running_loop()
    try:
        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp
        if args.whep:
            headers = {"Content-Type": "application/sdp"}
            if args.token:
                headers["Authorization"] = f"Bearer {args.token}"
            status, resp_headers, body = await loop.run_in_executor(
                None, _http, "POST", args.whep, offer.encode(), headers)
            if status != 201:
                raise RuntimeError(f"WHEP POST answered {status}: {body[:300]!r}")
            location = urllib.parse.urljoin(args.whep, resp_headers.get("location", ""))
            answer = body.decode()
        else:
            print(json.dumps({"offer": offer}), flush=True)
            line = await loop.run_in_executor(None, sys.stdin.readline)
            answer = json.loads(line)["answer"]
        answered_at = time.monotonic()
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await asyncio.wait_for(connected.wait(), args.connect_timeout)
        if args.progress:
            end = time.monotonic() + args.duration
            while time.monotonic() < end:
                transceivers = pc.getTransceivers()
                dtls = transceivers[0].receiver.transport.state if transceivers else None
                print(json.dumps({"progress": {
                    "t": time.monotonic(), "video_frames": result["video_frames"],
                    "state": pc.connectionState, "dtls_state": dtls,
                    "ended": result["ended"]}}), flush=True)
                await asyncio.sleep(0.1)
        else:
            await asyncio.sleep(args.duration)
    except Exception as exc:  # reported, not raised: the test asserts on it
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if location:
            headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
            try:
                status, _, _ = await loop.run_in_executor(None, _http, "DELETE", location,
                                                          None, headers)
            except OSError:  # the server is gone (a test stopped it): no status
                status = None
            result["delete_status"] = status
        final_state = pc.connectionState  # as it was while receiving, not "closed"
        await pc.close()
        result["ice_state"] = final_state
        for task in tasks:
            task.cancel()
    return result


def _receiver_codec(pc: Any) -> str | None:
    """The mime type of the video codec the answer chose (what the decoder decodes)."""
    for t in pc.getTransceivers():
        if t.kind == "video" and t._codecs:  # negotiated codecs, as aiortc stores them
            return str(t._codecs[0].mimeType)
    return None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--whep", help="WHEP endpoint URL")
    mode.add_argument("--stdio", action="store_true", help="exchange SDP over stdin/stdout")
    ap.add_argument("--token", default="")
    ap.add_argument("--video-codec", default="", help="offer only this video codec (vp8, h264)")
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--host-address", default="127.0.0.1",
                    help="the one local ICE host candidate (an address of a test namespace's veth)")
    ap.add_argument("--connect-timeout", type=float, default=15.0)
    ap.add_argument("--progress", action="store_true", help="print progress lines")
    kinds = ap.add_mutually_exclusive_group()
    kinds.add_argument("--video-only", action="store_true")
    kinds.add_argument("--audio-only", action="store_true")
    args = ap.parse_args(argv)
    result = asyncio.run(_viewer(args))
    print(json.dumps({"result": result}), flush=True)


# --- the trio side ----------------------------------------------------------------------------


async def run_aiortc_viewer(args: list[str],
                            answer_for_offer: Callable[[str], Awaitable[str]] | None = None,
                            timeout: float = 60.0,
                            on_progress: Callable[[dict[str, Any]], None] | None = None,
                            ) -> dict[str, Any]:
    """Run the viewer subprocess with ``args``; in ``--stdio`` mode ``answer_for_offer`` turns
    its offer into our answer; ``on_progress`` gets each ``--progress`` line (the flag is
    added). Returns the result dict (raises on timeout or a crash)."""
    import trio

    argv = [sys.executable, "-m", "tests.helpers.aiortc_viewer", *args]
    if answer_for_offer is not None and "--stdio" not in args:
        argv.append("--stdio")
    if on_progress is not None and "--progress" not in args:
        argv.append("--progress")
    with trio.fail_after(timeout):
        async with trio.open_nursery() as nursery:
            proc: trio.Process = await nursery.start(lambda task_status: trio.run_process(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, check=False,
                task_status=task_status))
            assert proc.stdout is not None and proc.stdin is not None
            buf = b""
            result: dict[str, Any] | None = None
            async for chunk in proc.stdout:
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    msg = json.loads(line)
                    if "offer" in msg:
                        assert answer_for_offer is not None
                        answer = await answer_for_offer(msg["offer"])
                        await proc.stdin.send_all(json.dumps({"answer": answer}).encode() + b"\n")
                    elif "progress" in msg:
                        if on_progress is not None:
                            on_progress(msg["progress"])
                    elif "result" in msg:
                        result = msg["result"]
            await proc.wait()
    if result is None:
        raise RuntimeError(f"aiortc viewer exited with {proc.returncode} and no result")
    return result


if __name__ == "__main__":
    main()
