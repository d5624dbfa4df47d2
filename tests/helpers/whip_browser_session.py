"""Headless Chromium publishes a fake camera over WHIP (medooze ``whip-whep``'s WHIPClient from
npm) and a second Chromium page plays it over WHEP; run *inside* a private network namespace.

Started by ``tests/interop/test_whip_browser.py`` as ``unshare -n python -m
tests.helpers.whip_browser_session <path of whip.js> <ffmpeg>`` (the recipe of
``tests/helpers/browser_session.py``: lo + a veth pair, server on 10.200.0.1). Chromium gets
``--use-fake-device-for-media-stream --use-fake-ui-for-media-stream`` (a generated camera
and microphone, no prompt) and ``--unsafely-treat-insecure-origin-as-secure`` for the
server's http origin (getUserMedia needs a secure context). Steps: publish (Bearer token),
watch on a second page, compare frames the publisher sent with frames the viewer decoded
over the same window, record the publisher's outgoing bitrate and bandwidth estimate (does
our REMB let it ramp up), start a ``{whip,name=cam}`` process writing HLS to memfs and
decode it with FFmpeg, stop the publisher (``stop()`` = DELETE), publish again under the same
name and check the viewer decodes again without a new offer. Prints one JSON line.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

from tests.helpers.browser_session import (
    CHROMIUM,
    CHROMIUM_ARGS,
    HOST,
    PORT,
    api,
    log_tail,
    network_up,
    stop,
    wait,
)

TOKEN = "whip-secret"
ORIGIN = f"http://{HOST}:{PORT}"

PUBLISH_JS = """async ([url, token, source]) => {
  const lib = await import('data:text/javascript;base64,' + source);
  const stream = await navigator.mediaDevices.getUserMedia(
      {video: {width: 640, height: 480, frameRate: 25}, audio: true});
  const pc = new RTCPeerConnection();
  for (const track of stream.getTracks()) pc.addTransceiver(track, {direction: 'sendonly'});
  const client = new lib.WHIPClient();
  try { await client.publish(pc, url, token); } catch (e) { return {error: String(e)}; }
  window.pubs = (window.pubs || []).concat([{pc, client, stream}]);
  return {ok: true};
}"""
UNPUBLISH_JS = """async () => {
  const p = window.pubs[window.pubs.length - 1];
  await p.client.stop();
  p.stream.getTracks().forEach(t => t.stop());
  return 0;
}"""
PUB_STATS_JS = """async () => {
  const p = window.pubs[window.pubs.length - 1];
  const out = {framesSent: 0, framesEncoded: 0, bytesSent: 0, codec: null, target: 0,
               available: null, state: p.pc.connectionState, audioPackets: 0};
  const stats = await p.pc.getStats();
  const codecs = {};
  stats.forEach(s => { if (s.type === 'codec') codecs[s.id] = s.mimeType; });
  stats.forEach(s => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') {
      out.framesSent += s.framesSent || 0; out.framesEncoded += s.framesEncoded || 0;
      out.bytesSent += s.bytesSent || 0; out.codec = codecs[s.codecId] || out.codec;
      out.target += s.targetBitrate || 0;
    }
    if (s.type === 'outbound-rtp' && s.kind === 'audio') out.audioPackets += s.packetsSent || 0;
    if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate)
      out.available = s.availableOutgoingBitrate;
  });
  return out;
}"""
VIEW_JS = """async (url) => {
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', {direction: 'recvonly'});
  pc.addTransceiver('audio', {direction: 'recvonly'});
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(r => { if (pc.iceGatheringState === 'complete') r();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r();
    setTimeout(r, 2000); });
  const r = await fetch(url, {method: 'POST', headers: {'Content-Type': 'application/sdp'},
                              body: pc.localDescription.sdp});
  const text = await r.text();
  if (r.status !== 201) return {error: 'POST ' + r.status + ' ' + text};
  await pc.setRemoteDescription({type: 'answer', sdp: text});
  window.pc = pc;
  return {ok: true};
}"""
VIEW_STATS_JS = """async () => {
  const out = {framesDecoded: 0, keyFramesDecoded: 0, audioPackets: 0, codec: null,
               state: window.pc.connectionState, width: 0};
  const stats = await window.pc.getStats();
  const codecs = {};
  stats.forEach(s => { if (s.type === 'codec') codecs[s.id] = s.mimeType; });
  stats.forEach(s => {
    if (s.type !== 'inbound-rtp') return;
    if (s.kind === 'video') { out.framesDecoded = s.framesDecoded || 0;
      out.keyFramesDecoded = s.keyFramesDecoded || 0; out.codec = codecs[s.codecId] || null;
      out.width = s.frameWidth || 0; }
    if (s.kind === 'audio') out.audioPackets = s.packetsReceived || 0;
  });
  return out;
}"""


def hls_process() -> dict[str, Any]:
    return {
        "id": "rec",
        "input": [{"id": "in", "address": "{whip,name=cam}", "options": []}],
        "output": [{"id": "hls", "address": "{memfs}/rec.m3u8",
                    "options": ["-map", "0:v", "-c:v", "libx264", "-preset", "ultrafast",
                                "-g", "25", "-f", "hls", "-hls_time", "1",
                                "-hls_list_size", "4", "-hls_flags", "delete_segments"]}],
        "reconnect": True, "reconnect_delay_seconds": 1,
    }


#: Chromium with a fake camera and microphone, allowed getUserMedia on the plain-HTTP origin
PUBLISHER_ARGS = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream",
                  "--use-fake-ui-for-media-stream",
                  f"--unsafely-treat-insecure-origin-as-secure={ORIGIN}"]


def start_server(prefix: str, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    """trio-core with WebRTC and WHIP (token :data:`TOKEN`) at HOST:PORT in a new work
    directory (``prefix``), ``env`` added to its environment; returns it and the directory.
    The caller waits for its API."""
    workdir = tempfile.mkdtemp(prefix=prefix)
    full = {
        **os.environ,
        "CORE_API_ADDRESS": f"{HOST}:{PORT}", "CORE_API_ALLOW_PUBLIC_BIND": "true",
        "CORE_WEBRTC_ENABLE": "true", "CORE_WEBRTC_BIND_ADDRESS": HOST,
        "CORE_WEBRTC_PUBLIC_IP": HOST, "CORE_DEMO_ENABLE": "false",
        "CORE_WHIP_ENABLE": "true", "CORE_WHIP_TOKEN": TOKEN,
        "CORE_DB_DIR": os.path.join(workdir, "db"),
        "CORE_STORAGE_DISK_DIR": os.path.join(workdir, "data"),
        **env,
    }
    server = subprocess.Popen([sys.executable, "-m", "trio_core"], env=full, cwd=workdir,
                              stdout=subprocess.DEVNULL, stderr=open(  # noqa: SIM115
                                  os.path.join(workdir, "server.log"), "wb"))
    return server, workdir


def publish(browser: Any, library: str, result: dict[str, Any], what: str) -> Any:
    """A new page of ``browser`` publishing its fake camera to ``/whip/cam`` (the answer in
    ``result["publish"]``); returns once the server counted more than 50 packets."""
    pub = browser.new_page()
    pub.goto(f"{ORIGIN}/api", wait_until="domcontentloaded")
    result["publish"] = pub.evaluate(PUBLISH_JS, [f"{ORIGIN}/whip/cam", TOKEN, library])
    if result["publish"].get("error"):
        raise RuntimeError(f"publish: {result['publish']['error']}")
    wait(lambda: any(e["name"] == "cam" and e["packets"] > 50
                     for e in api("GET", "/api/v3/whip")[1]), 30, what)
    return pub


def play(browser: Any, result: dict[str, Any], interval: float) -> tuple[Any, int]:
    """A new page of ``browser`` playing ``/whep/cam`` (the answer in ``result["view"]``);
    returns it once a frame was decoded, and the milliseconds from the POST to that frame
    (polled every ``interval`` seconds)."""
    view = browser.new_page()
    view.goto(f"{ORIGIN}/api", wait_until="domcontentloaded")
    t_post = time.monotonic()
    result["view"] = view.evaluate(VIEW_JS, f"{ORIGIN}/whep/cam")
    if result["view"].get("error"):
        raise RuntimeError(f"view: {result['view']['error']}")
    wait(lambda: view.evaluate(VIEW_STATS_JS)["framesDecoded"] > 0, 20,
         "the first decoded frame", interval=interval)
    return view, round((time.monotonic() - t_post) * 1000)


def main() -> int:
    from playwright.sync_api import sync_playwright

    ffmpeg = sys.argv[2]
    with open(sys.argv[1], "rb") as f:
        library = base64.b64encode(f.read()).decode()
    network_up()
    server, workdir = start_server(
        "trio-core-whip-browser-", CORE_FFMPEG_BINARY=ffmpeg,
        CORE_WHIP_MAX_BITRATE_KBIT=sys.argv[3] if len(sys.argv) > 3 else "2500")
    result: dict[str, Any] = {"error": None}
    try:
        wait(lambda: api("GET", "/api")[0] == 200, 30, "the API")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=PUBLISHER_ARGS)
            try:
                result["browser"] = browser.version
                pub = publish(browser, library, result, "published media")
                view, result["first_frame_ms"] = play(browser, result, interval=0.02)
                time.sleep(1)
                p0, v0, t0 = pub.evaluate(PUB_STATS_JS), view.evaluate(VIEW_STATS_JS), time.monotonic()
                time.sleep(5)
                p1, v1, t1 = pub.evaluate(PUB_STATS_JS), view.evaluate(VIEW_STATS_JS), time.monotonic()
                result.update(pub_before=p0, pub_after=p1, view_before=v0, view_after=v1,
                              window=round(t1 - t0, 2),
                              sent_kbit=round((p1["bytesSent"] - p0["bytesSent"]) * 8
                                              / (t1 - t0) / 1000))
                result["whip_list"] = api("GET", "/api/v3/whip")[1]
                # a {whip} process writes HLS; FFmpeg decodes it
                result["rec_status"] = api("POST", "/api/v3/process", hls_process())[0]
                time.sleep(0.1)
                wait(lambda: b"#EXTM3U" in urllib.request.urlopen(f"{ORIGIN}/memfs/rec.m3u8",
                                                              timeout=5).read(),
                     30, "the HLS playlist")
                time.sleep(2.5)
                dec = subprocess.run(
                    [ffmpeg, "-hide_banner", "-nostdin", "-i", f"{ORIGIN}/memfs/rec.m3u8",
                     "-frames:v", "25", "-f", "null", "-"], capture_output=True, timeout=60)
                result["hls_decode"] = {"rc": dec.returncode,
                                        "tail": dec.stderr.decode(errors="replace")[-600:]}
                # stop and come back under the same name: the viewer decodes again
                pub.evaluate(UNPUBLISH_JS)
                wait(lambda: not api("GET", "/api/v3/whip")[1][0]["publishing"], 10,
                     "the name to be freed")
                time.sleep(1)
                stalled = view.evaluate(VIEW_STATS_JS)
                result["republish"] = pub.evaluate(PUBLISH_JS, [f"{ORIGIN}/whip/cam", TOKEN,
                                                                library])
                wait(lambda: view.evaluate(VIEW_STATS_JS)["framesDecoded"]
                     > stalled["framesDecoded"] + 50, 20, "frames of the second publisher")
                result["view_stalled"] = stalled
                result["view_back"] = view.evaluate(VIEW_STATS_JS)
            finally:
                browser.close()
    except Exception as exc:  # noqa: BLE001 - reported to the test
        result["error"] = f"{type(exc).__name__}: {exc}"
        try:
            result["playlist"] = urllib.request.urlopen(f"{ORIGIN}/memfs/rec.m3u8",
                                                        timeout=5).read().decode()[-300:]
        except Exception as exc2:  # noqa: BLE001
            result["playlist"] = repr(exc2)
        result["memfs"] = api("GET", "/api/v3/fs/mem")[1]
        status, report = api("GET", "/api/v3/process/rec/report")
        if status == 200:
            result["rec_log"] = json.dumps(report)[-3000:]
    finally:
        result["server_log_tail"] = log_tail(workdir)
        result["server_exit"] = stop(server)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
