"""A GStreamer webrtcbin WHEP viewer (Debian's python3-gi; run with the system Python).

``/usr/bin/python3 tests/helpers/gst_viewer.py WHEP_URL SECONDS`` offers recvonly video (H264
packetization-mode 1 and VP8, NACK/PLI) and Opus audio with ``bundle-policy=max-bundle``
(webrtcbin's default, ``none``, offers no BUNDLE group), POSTs the offer, applies the
answer (and its candidates), decodes everything with ``decodebin`` and counts decoded
video frames and audio buffers for SECONDS after the first frame. Prints one JSON line:
``video_frames``, ``audio_buffers``, ``video_caps``, ``window``, ``error``. Standalone on
purpose: only the standard library and gi, so the Debian interpreter can run it.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

VIDEO_CAPS = (
    "application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000,"
    "packetization-mode=(string)1,profile-level-id=(string)42e01f,"
    "rtcp-fb-nack=(boolean)true,rtcp-fb-nack-pli=(boolean)true;"
    "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000,"
    "rtcp-fb-nack=(boolean)true,rtcp-fb-nack-pli=(boolean)true"
)
AUDIO_CAPS = ("application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,"
              "encoding-params=(string)2")


def main() -> None:
    url, seconds = sys.argv[1], float(sys.argv[2])
    Gst.init(None)
    result = {"video_frames": 0, "audio_buffers": 0, "video_caps": None, "window": seconds,
              "error": None, "delete_status": None}
    counts = {"video": 0, "audio": 0}
    first_frame: list[float] = []
    pipe = Gst.Pipeline.new("viewer")
    webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
    webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
    pipe.add(webrtc)
    recv = GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY
    webrtc.emit("add-transceiver", recv, Gst.Caps.from_string(VIDEO_CAPS))
    webrtc.emit("add-transceiver", recv, Gst.Caps.from_string(AUDIO_CAPS))
    loop = GLib.MainLoop()

    def on_decoded_pad(_bin: Gst.Element, pad: Gst.Pad) -> None:
        caps = pad.get_current_caps() or pad.query_caps(None)
        name = caps.get_structure(0).get_name()
        kind = "video" if name.startswith("video") else "audio"
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("signal-handoffs", True)
        sink.set_property("sync", False)

        def handoff(*_args: object) -> None:
            if kind == "video" and not first_frame:
                first_frame.append(time.monotonic())
            if first_frame:
                counts[kind] += 1

        sink.connect("handoff", handoff)
        pipe.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))

    def on_pad(_el: Gst.Element, pad: Gst.Pad) -> None:
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        caps = pad.get_current_caps()
        if caps is not None and caps.get_structure(0).get_string("media") == "video":
            result["video_caps"] = caps.get_structure(0).get_string("encoding-name")
        dec = Gst.ElementFactory.make("decodebin")
        dec.connect("pad-added", on_decoded_pad)
        pipe.add(dec)
        dec.sync_state_with_parent()
        pad.link(dec.get_static_pad("sink"))

    webrtc.connect("pad-added", on_pad)
    pipe.set_state(Gst.State.PLAYING)
    location = None
    try:
        offered = Gst.Promise.new()  # kept alive: its reply owns the offer
        webrtc.emit("create-offer", None, offered)
        offered.wait()
        reply = offered.get_reply()  # kept: the offer lives in it
        offer = reply.get_value("offer")
        promise = Gst.Promise.new()
        webrtc.emit("set-local-description", offer, promise)
        promise.wait()
        req = urllib.request.Request(url, data=offer.sdp.as_text().encode(), method="POST",
                                     headers={"Content-Type": "application/sdp"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            answer_text = resp.read().decode()
            location = urllib.parse.urljoin(url, resp.headers["Location"])
        _, sdp = GstSdp.SDPMessage.new_from_text(answer_text)
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
        promise = Gst.Promise.new()
        webrtc.emit("set-remote-description", answer, promise)
        promise.wait()
        for line in answer_text.splitlines():
            if line.startswith("a=candidate:"):
                webrtc.emit("add-ice-candidate", 0, line[2:])
        deadline = time.monotonic() + 30

        def tick() -> bool:
            now = time.monotonic()
            if first_frame and now - first_frame[0] >= seconds:
                loop.quit()
                return False
            if not first_frame and now > deadline:
                result["error"] = "no decoded video frame within 30 s"
                loop.quit()
                return False
            return True

        GLib.timeout_add(50, tick)
        loop.run()
        if first_frame:
            result["window"] = time.monotonic() - first_frame[0]
    except Exception as exc:  # noqa: BLE001 - reported, the test asserts on it
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        result["video_frames"], result["audio_buffers"] = counts["video"], counts["audio"]
        if location:
            try:
                req = urllib.request.Request(location, method="DELETE")
                with urllib.request.urlopen(req, timeout=10) as resp:
                    result["delete_status"] = resp.status
            except OSError as exc:
                result["delete_status"] = str(exc)
        pipe.set_state(Gst.State.NULL)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
