"""A minimal aiortc *sender* (full ICE, loopback only), used to self-test the aiortc viewer.

Protocol over stdio (one JSON object per line): reads ``{"offer": sdp}``, prints
``{"answer": sdp}``, then sends a 320x240 test picture (30 fps) and a 440 Hz tone until
stdin closes. asyncio, so it only ever runs as a subprocess of the trio tests.
"""

from __future__ import annotations

import array
import asyncio
import fractions
import json
import math
import sys
import time

import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

WIDTH, HEIGHT = 320, 240


class TestVideo(MediaStreamTrack):
    """A moving grey edge, 30 fps."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._n = 0
        self._start = 0.0

    async def recv(self) -> av.VideoFrame:
        if self._n == 0:
            self._start = time.time()
        else:
            await asyncio.sleep(max(0.0, self._start + self._n / 30 - time.time()))
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        edge = (self._n * 4) % WIDTH
        luma = (b"\x20" * edge + b"\xc8" * (WIDTH - edge)) * HEIGHT
        frame.planes[0].update(luma)
        for plane in frame.planes[1:]:
            plane.update(b"\x80" * plane.buffer_size)
        frame.pts, frame.time_base = self._n * 3000, fractions.Fraction(1, 90000)
        self._n += 1
        return frame


class TestAudio(MediaStreamTrack):
    """A 440 Hz tone, 20 ms frames at 48 kHz mono."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._n = 0
        self._start = 0.0

    async def recv(self) -> av.AudioFrame:
        if self._n == 0:
            self._start = time.time()
        else:
            await asyncio.sleep(max(0.0, self._start + self._n * 0.02 - time.time()))
        first = self._n * 960
        pcm = array.array("h", (int(8000 * math.sin(2 * math.pi * 440 * (first + i) / 48000))
                                for i in range(960)))
        frame = av.AudioFrame(format="s16", layout="mono", samples=960)
        frame.planes[0].update(pcm.tobytes())
        frame.sample_rate, frame.pts = 48000, self._n * 960
        frame.time_base = fractions.Fraction(1, 48000)
        self._n += 1
        return frame


async def _sender() -> None:
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]
    loop = asyncio.get_running_loop()
    offer = json.loads(await loop.run_in_executor(None, sys.stdin.readline))["offer"]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
    for transceiver in pc.getTransceivers():
        pc.addTrack(TestVideo() if transceiver.kind == "video" else TestAudio())
    await pc.setLocalDescription(await pc.createAnswer())
    print(json.dumps({"answer": pc.localDescription.sdp}), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the test closes our stdin
    await pc.close()


if __name__ == "__main__":
    asyncio.run(_sender())
