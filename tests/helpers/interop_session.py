"""A browser against every source kind, run *inside* a private network namespace.

Started by ``tests/interop/test_interop.py`` as ``unshare -n python -m tests.helpers.interop_session
{chromium|firefox} SOURCES_JSON`` (``{"name": "/path/to/file", …}``): like
``tests/helpers/browser_session.py`` it brings up a veth pair, runs ``trio-core`` on 10.200.0.1 and
creates one WebRTC process per source file (looped, real time; for Firefox with
``webrtc.video_codecs: ["h264", "vp8"]``, since Debian's Firefox ESR has no OpenH264 and
offers no H264). For each it opens a page whose script is a plain ``RTCPeerConnection`` WHEP
client (not the product's player): POST the recvonly offer, set the answer, then read
``getStats()`` — frames received/decoded/dropped, key frames, PLI/NACK counts, the codec,
audio packets — over a 4 s window, read the server's view of the session from the process
state, and DELETE the session. ``firefox-multihome`` binds the WebRTC port to ``0.0.0.0`` with a second address
(10.200.0.3) on the server's interface and announces only that one.
``chromium-whip-whep`` uses medooze's ``whip-whep`` WHEP client library
(its ``whep.js`` from npm, path in argv[3]) with a process token instead of the plain page.
Chromium (Debian's) is driven by playwright, Firefox ESR
(Debian's, headless) by Marionette (``marionette-driver``); ``gstreamer`` runs
``tests/helpers/gst_viewer.py`` (webrtcbin, Debian's python3-gi) per source instead of a page.
One JSON line out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from tests.helpers.browser_session import CHROMIUM, CHROMIUM_ARGS, HOST, PORT, api, network_up, wait

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

#: With medooze's ``whip-whep`` library (npm, loaded as an ES module): ``view()`` POSTs the
#: offer with ``Authorization: Bearer <token>``, trickles candidates with PATCH; ``stop()``
#: DELETEs the session URL with the same header.
LIB_START_JS = """async ([url, token, source]) => {
  const lib = await import('data:text/javascript;base64,' + source);
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', {direction: 'recvonly'});
  pc.addTransceiver('audio', {direction: 'recvonly'});
  const client = new lib.WHEPClient();
  try { await client.view(pc, url, token); } catch (e) { return {error: String(e)}; }
  window.pc = pc;
  window.whep = client;
  return {ok: true};
}"""
LIB_STOP_JS = "async () => { await window.whep.stop(); return 0; }"

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


TOKEN = "viewer-secret"
SECOND_ADDRESS = "10.200.0.3"


def process_config(name: str, path: str, video_codecs: list[str], token: str = ""
                   ) -> dict[str, Any]:
    webrtc: dict[str, Any] = {"enabled": True}
    if token:
        webrtc["token"] = token
    if video_codecs:
        webrtc["video_codecs"] = video_codecs
    return {
        "id": name,
        "input": [{"id": "in", "address": path, "options": ["-re", "-stream_loop", "-1"]}],
        "output": [{"id": "null", "address": "-", "options": ["-map", "0:v", "-f", "null"]}],
        "webrtc": webrtc,
    }


class ChromiumPage:
    def __init__(self, page: Any) -> None:
        self.page = page

    def goto(self, url: str) -> None:
        self.page.goto(url, wait_until="domcontentloaded")

    def call(self, fn: str, arg: Any = None) -> Any:
        return self.page.evaluate(fn, arg)

    def close(self) -> None:
        self.page.close()


class FirefoxPage:
    """The same two operations over Marionette (the function runs as an async script)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def goto(self, url: str) -> None:
        self.client.navigate(url)

    def call(self, fn: str, arg: Any = None) -> Any:
        script = ("const done = arguments[arguments.length - 1];"
                  f"({fn})(arguments[0]).then(done, e => done({{error: String(e)}}));")
        return self.client.execute_async_script(script, script_args=[arg], script_timeout=30000,
                                                sandbox="interop", new_sandbox=False)

    def close(self) -> None:
        self.client.navigate("about:blank")  # the page and its peer connection go


def source_frames(name: str) -> dict[str, int]:
    """Frames (marker-bit packets) the producer has sent so far, per track."""
    webrtc = api("GET", f"/api/v3/process/{name}/state")[1].get("webrtc") or {}
    tracks = (webrtc.get("source") or {}).get("tracks") or {}
    return {k: int(t.get("frames", 0)) for k, t in tracks.items()}


def play(page: Any, name: str, library: str = "") -> dict[str, Any]:
    page.goto(f"http://{HOST}:{PORT}/")  # an HTML page of the server: same origin
    if library:
        started = page.call(LIB_START_JS, [f"http://{HOST}:{PORT}/api/v3/process/{name}/whep",
                                           TOKEN, library])
    else:
        started = page.call(START_JS, f"/api/v3/process/{name}/whep")
    if started.get("error"):
        return {"error": started["error"]}

    def stats() -> dict[str, Any]:
        return page.call(STATS_JS)

    try:
        first = wait(lambda: (s := stats())["video"] and s["video"]["framesDecoded"] > 0 and s,
                     60, f"{name}: the first decoded frame")
    except TimeoutError as exc:  # say what the browser and the server saw
        state = api("GET", f"/api/v3/process/{name}/state")[1].get("webrtc") or {}
        return {"error": str(exc), "browser_stats": stats(),
                "server_viewers": state.get("viewers"),
                "server_closed": state.get("closed_viewers")}
    sent_first = source_frames(name)
    t0 = time.monotonic()
    time.sleep(WINDOW)
    later = stats()
    elapsed = time.monotonic() - t0
    sent_later = source_frames(name)
    # let the decoder finish what had arrived by the end of the window (a loaded machine's
    # decoder lags a few hundred ms); the test counts only frames received in the window
    target = (later["video"]["framesReceived"] - first["video"]["framesReceived"]
              + first["video"]["framesDecoded"])
    try:
        settled = wait(lambda: (s := stats())["video"]["framesDecoded"] >= target and s,
                       3, "the decoder to catch up", interval=0.1)
    except TimeoutError:
        settled = stats()
    state = api("GET", f"/api/v3/process/{name}/state")[1]["webrtc"]
    viewer = state["viewers"][0] if state["viewers"] else {}
    track = next((k for k in viewer.get("tracks", {}) if k.startswith("video")), "video")
    if library:
        page.call(LIB_STOP_JS)
        time.sleep(0.5)
        state = api("GET", f"/api/v3/process/{name}/state")[1]["webrtc"]
        closed = [c for c in state.get("closed_viewers") or [] if c["id"] == viewer.get("id")]
        viewer["closed_by"] = closed[0]["close_reason"] if closed else None
    else:
        page.call("async () => (await fetch(window.loc, {method: 'DELETE'})).status")
    return {
        "closed_by": viewer.get("closed_by"),
        # video frames the producer sent on the viewer's track during the window
        "frames_sent": sent_later.get(track, 0) - sent_first.get(track, 0),
        "error": None, "first": first, "later": later, "settled": settled, "elapsed": elapsed,
        "decisions": state.get("decisions"), "tracks": state.get("tracks"),
        "remote_address": viewer.get("remote_address"),
        "server_dropped": viewer.get("dropped"), "server_replays": viewer.get("keyframe_replays"),
        "server_rtx": viewer.get("rtx_sent"),
    }


GST_PYTHON = "/usr/bin/python3"  # Debian's interpreter: python3-gi lives there


def play_gstreamer(name: str) -> dict[str, Any]:
    """GStreamer webrtcbin (``tests/helpers/gst_viewer.py``) as the client of ``name``."""
    url = f"http://{HOST}:{PORT}/api/v3/process/{name}/whep"
    viewer = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gst_viewer.py")
    proc = subprocess.run([GST_PYTHON, viewer, url, str(WINDOW)], capture_output=True,
                          timeout=90, check=False)
    lines = proc.stdout.decode().strip().splitlines()
    if not lines:
        return {"error": "gst_viewer printed nothing: " + proc.stderr.decode()[-1500:]}
    gst = json.loads(lines[-1])
    state = api("GET", f"/api/v3/process/{name}/state")[1].get("webrtc") or {}
    closed = state.get("closed_viewers") or [{}]
    return {"error": gst.pop("error"), "gst": gst, "decisions": state.get("decisions"),
            "server_dropped": closed[-1].get("dropped")}


def firefox(workdir: str) -> Any:
    """Start Debian's Firefox ESR headless with Marionette; return (process, client)."""
    from marionette_driver.marionette import Marionette

    profile = os.path.join(workdir, "firefox-profile")
    os.makedirs(profile)
    prefs = {
        "browser.shell.checkDefaultBrowser": False, "app.update.enabled": False,
        "datareporting.policy.dataSubmissionEnabled": False, "toolkit.telemetry.enabled": False,
        "media.gmp-manager.updateEnabled": False, "network.proxy.type": 0,
        "browser.aboutwelcome.enabled": False, "marionette.port": 2828,
    }
    with open(os.path.join(profile, "user.js"), "w") as f:
        for key, value in prefs.items():
            f.write(f"user_pref({json.dumps(key)}, {json.dumps(value)});\n")
    proc = subprocess.Popen(["firefox-esr", "--headless", "--marionette", "--no-remote",
                             "--profile", profile], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(workdir, "firefox.log"), "wb"))  # noqa: SIM115
    client = Marionette(host="127.0.0.1", port=2828)
    client.start_session(timeout=60)
    return proc, client


def main() -> int:
    client_name = sys.argv[1]
    sources: dict[str, str] = json.loads(sys.argv[2])
    network_up()
    # "firefox-multihome": the WebRTC port bound to 0.0.0.0 on a host with a second address
    # on the server's interface, announced as the candidate (the browser sends there)
    multihome = client_name.endswith("-multihome")
    client_name = client_name.removesuffix("-multihome")
    bind, public = HOST, HOST
    if multihome:
        subprocess.run(["ip", "addr", "add", f"{SECOND_ADDRESS}/24", "dev", "va"], check=True)
        bind, public = "0.0.0.0", SECOND_ADDRESS
    workdir = tempfile.mkdtemp(prefix="trio-core-interop-")
    env = {
        **os.environ,
        "CORE_API_ADDRESS": f"{HOST}:{PORT}", "CORE_API_ALLOW_PUBLIC_BIND": "true",
        "CORE_WEBRTC_ENABLE": "true", "CORE_WEBRTC_BIND_ADDRESS": bind,
        "CORE_WEBRTC_PUBLIC_IP": public, "CORE_DEMO_ENABLE": "false",
        "CORE_DB_DIR": os.path.join(workdir, "db"),
        "CORE_STORAGE_DISK_DIR": os.path.join(workdir, "data"),
    }
    result: dict[str, Any] = {"error": None, "cases": {}}
    server = subprocess.Popen([sys.executable, "-m", "trio_core"], env=env, cwd=workdir,
                              stdout=subprocess.DEVNULL, stderr=open(  # noqa: SIM115
                                  os.path.join(workdir, "server.log"), "wb"))
    codecs = ["h264", "vp8"] if client_name == "firefox" else []
    library = ""
    if client_name == "chromium-whip-whep":  # whep.js of the npm package, path in argv[3]
        import base64

        with open(sys.argv[3], "rb") as f:
            library = base64.b64encode(f.read()).decode()

    def run_cases(new_page: Any) -> None:
        for name, path in sources.items():
            api("POST", "/api/v3/process",
                process_config(name, path, [] if name == "vp8" else codecs,
                               TOKEN if library else ""))
            try:
                wait(lambda n=name: (api("GET", f"/api/v3/process/{n}/state")[1]
                                     .get("webrtc") or {}).get("live"),
                     30, f"{name} to be live")
                if new_page is None:
                    result["cases"][name] = play_gstreamer(name)
                    continue
                page = new_page()
                try:
                    result["cases"][name] = play(page, name, library)
                finally:
                    page.close()
            except Exception as exc:  # noqa: BLE001 - reported per case
                result["cases"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            api("DELETE", f"/api/v3/process/{name}")

    ff_proc = None
    try:
        wait(lambda: api("GET", "/api")[0] == 200, 30, "the API")
        if client_name == "gstreamer":
            run_cases(None)
        elif client_name == "firefox":
            ff_proc, ff = firefox(workdir)
            try:
                result["browser"] = ff.session_capabilities.get("browserVersion")
                run_cases(lambda: FirefoxPage(ff))
            finally:
                ff.delete_session()
        else:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    result["browser"] = browser.version
                    run_cases(lambda: ChromiumPage(browser.new_page()))
                finally:
                    browser.close()
    except Exception as exc:  # noqa: BLE001 - reported to the test
        result["error"] = f"{type(exc).__name__}: {exc}"
        try:
            with open(os.path.join(workdir, "server.log"), "rb") as f:
                result["server_log_tail"] = f.read()[-2000:].decode(errors="replace")
        except OSError:
            pass
    finally:
        if ff_proc is not None:
            ff_proc.terminate()
            try:
                ff_proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                ff_proc.kill()
                ff_proc.wait()
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
