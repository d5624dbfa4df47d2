"""Chromium against every source kind, run *inside* a private network namespace.

Started by ``tests/test_interop.py`` as ``unshare -n python -m tests.interop_session
SOURCES_JSON`` (``{"name": "/path/to/file", …}``): like ``tests/browser_session.py`` it brings
up a veth pair, runs ``trio-core`` on 10.200.0.1 and creates one WebRTC process per source
file (looped, real time). For each it opens a page in Debian's Chromium whose script is a
plain ``RTCPeerConnection`` WHEP client (not the product's player): POST the recvonly
offer, set the answer, then read ``getStats()`` — frames received/decoded/dropped, key
frames, PLI/NACK counts, the codec, audio packets — over a 4 s window, read the server's
view of the session from the process state, and DELETE the session. One JSON line out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from tests.browser_session import CHROMIUM, CHROMIUM_ARGS, HOST, PORT, api, network_up, wait

WINDOW = 4.0

START_JS = """async (url) => {
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', {direction: 'recvonly'});
  pc.addTransceiver('audio', {direction: 'recvonly'});
  await pc.setLocalDescription(await pc.createOffer());
  const r = await fetch(url, {method: 'POST', headers: {'Content-Type': 'application/sdp'},
                              body: pc.localDescription.sdp});
  const text = await r.text();
  if (r.status !== 201) return {error: 'POST ' + r.status + ' ' + text};
  await pc.setRemoteDescription({type: 'answer', sdp: text});
  window.pc = pc;
  window.loc = r.headers.get('Location');
  return {ok: true};
}"""

STATS_JS = """async () => {
  const out = {video: null, audio: null, state: window.pc.connectionState};
  const stats = await window.pc.getStats();
  const codecs = {};
  stats.forEach(s => { if (s.type === 'codec') codecs[s.id] = s.mimeType; });
  stats.forEach(s => {
    if (s.type !== 'inbound-rtp') return;
    if (s.kind === 'video') out.video = {
      framesReceived: s.framesReceived || 0, framesDecoded: s.framesDecoded || 0,
      framesDropped: s.framesDropped || 0, keyFramesDecoded: s.keyFramesDecoded || 0,
      pliCount: s.pliCount || 0, nackCount: s.nackCount || 0,
      packetsLost: s.packetsLost || 0, codec: codecs[s.codecId] || null,
      decoder: s.decoderImplementation || null};
    if (s.kind === 'audio') out.audio = {packetsReceived: s.packetsReceived || 0,
                                         codec: codecs[s.codecId] || null};
  });
  return out;
}"""


def process_config(name: str, path: str) -> dict[str, Any]:
    return {
        "id": name,
        "input": [{"id": "in", "address": path, "options": ["-re", "-stream_loop", "-1"]}],
        "output": [{"id": "null", "address": "-", "options": ["-map", "0:v", "-f", "null"]}],
        "webrtc": {"enabled": True},
    }


def play(page: Any, name: str) -> dict[str, Any]:
    page.goto(f"http://{HOST}:{PORT}/api", wait_until="domcontentloaded")
    started = page.evaluate(START_JS, f"/api/v3/process/{name}/whep")
    if started.get("error"):
        return {"error": started["error"]}

    def stats() -> dict[str, Any]:
        return page.evaluate(STATS_JS)

    first = wait(lambda: (s := stats())["video"] and s["video"]["framesDecoded"] > 0 and s,
                 30, f"{name}: the first decoded frame")
    t0 = time.monotonic()
    time.sleep(WINDOW)
    later = stats()
    elapsed = time.monotonic() - t0
    state = api("GET", f"/api/v3/process/{name}/state")[1]["webrtc"]
    viewer = state["viewers"][0] if state["viewers"] else {}
    page.evaluate("fetch(window.loc, {method: 'DELETE'}).then(r => r.status)")
    return {
        "error": None, "first": first, "later": later, "elapsed": elapsed,
        "decisions": state.get("decisions"), "tracks": state.get("tracks"),
        "server_dropped": viewer.get("dropped"), "server_replays": viewer.get("keyframe_replays"),
        "server_rtx": viewer.get("rtx_sent"),
    }


def main() -> int:
    from playwright.sync_api import sync_playwright

    sources: dict[str, str] = json.loads(sys.argv[1])
    network_up()
    workdir = tempfile.mkdtemp(prefix="trio-core-interop-")
    env = {
        **os.environ,
        "CORE_API_ADDRESS": f"{HOST}:{PORT}", "CORE_API_ALLOW_PUBLIC_BIND": "true",
        "CORE_WEBRTC_ENABLE": "true", "CORE_WEBRTC_BIND_ADDRESS": HOST,
        "CORE_WEBRTC_PUBLIC_IP": HOST, "CORE_DEMO_ENABLE": "false",
        "CORE_DB_DIR": os.path.join(workdir, "db"),
        "CORE_STORAGE_DISK_DIR": os.path.join(workdir, "data"),
    }
    result: dict[str, Any] = {"error": None, "cases": {}}
    server = subprocess.Popen([sys.executable, "-m", "trio_core"], env=env, cwd=workdir,
                              stdout=subprocess.DEVNULL, stderr=open(  # noqa: SIM115
                                  os.path.join(workdir, "server.log"), "wb"))
    try:
        wait(lambda: api("GET", "/api")[0] == 200, 30, "the API")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                for name, path in sources.items():
                    api("POST", "/api/v3/process", process_config(name, path))
                    try:
                        wait(lambda n=name: (api("GET", f"/api/v3/process/{n}/state")[1]
                                             .get("webrtc") or {}).get("live"),
                             30, f"{name} to be live")
                        page = browser.new_page()
                        try:
                            result["cases"][name] = play(page, name)
                        finally:
                            page.close()
                    except Exception as exc:  # noqa: BLE001 - reported per case
                        result["cases"][name] = {"error": f"{type(exc).__name__}: {exc}"}
                    api("DELETE", f"/api/v3/process/{name}")
            finally:
                browser.close()
    except Exception as exc:  # noqa: BLE001 - reported to the test
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
