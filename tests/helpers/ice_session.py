"""Browsers behind firewalls and on moving networks (issue 21), run *inside* a private
network namespace.

Started by ``tests/interop/test_ice_tcp_browsers.py`` as ``unshare -n python -m
tests.helpers.ice_session SCENARIO``; like ``tests/helpers/interop_session.py`` it brings up a
veth pair (server 10.200.0.1, viewer 10.200.0.2), runs ``trio-core`` and a lavfi WebRTC
process, and prints one JSON line. Scenarios:

* ``chromium-tcp`` / ``firefox-tcp`` / ``gstreamer-tcp``: **all UDP of the network is dropped** (nft: every
  datagram from or to 10.200.0.0/24 and all IPv6 UDP; only FFmpeg's loopback RTP into the
  server stays) and the
  server listens for ICE-TCP on 10.200.0.1:8555; a plain ``RTCPeerConnection`` WHEP page
  (GStreamer: ``tests/helpers/gst_viewer.py``, webrtcbin over libnice) plays over the
  ``tcptype passive`` candidate (frames measured as in the interop matrix).
* ``chromium-turn``: Debian's coturn (``turnserver``, TURN REST secret) in **its own network
  namespace** (10.201.0.2, a second veth pair; this namespace routes between the two), no
  ICE-TCP; Chromium in its own network namespace (as in ``chromium-restart``) whose nft
  output policy drops everything but coturn and the HTTP API (TCP 8080) — the only way to
  the media port is the relay. The server announces
  coturn in ``Link`` headers (``webrtc.ice_servers`` with ``secret``) and the product's
  **player page** reads them into ``iceServers``.

* ``chromium-restart``: Chromium runs in **its own network namespace** (a holder process
  made with ``unshare -n``; the veth's viewer end moved into it; Chromium started through
  ``nsenter``), so its only address is the viewer's 10.200.0.2. It plays over UDP, then the
  address moves (``ip addr del`` 10.200.0.2, ``add`` 10.200.0.4 in that namespace) and the
  page runs Chromium's ``restartIce()``, PATCHes the new ufrag/pwd (``If-Match`` = the ETag
  of the 201) and applies the server's sdpfrag — no new POST. It reports how long until
  ``framesDecoded`` grew again, and the server's view of the one session before and after.

Everything started here is stopped on exit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from tests.helpers import browser_session
from tests.helpers.browser_session import CHROMIUM, CHROMIUM_ARGS, PORT, network_up, wait
from tests.helpers.interop_session import (
    START_JS,
    STATS_JS,
    ChromiumPage,
    FirefoxPage,
    firefox,
    play,
    play_gstreamer,
)

TCP_PORT = 8555
UDP_PORT = 8556
TURN = "10.201.0.2"  # coturn, in its own namespace behind the server's 10.201.0.1
TURN_SECRET = "issue21-shared-secret"

HOST = browser_session.HOST
VIEWER = "10.200.0.2"
MOVED = "10.200.0.4"

RESTART_JS = """async () => {
  const pc = window.pc;
  pc.restartIce();
  const offer = await pc.createOffer({iceRestart: true});
  await pc.setLocalDescription(offer);
  const ufrag = offer.sdp.match(/a=ice-ufrag:(.*)\\r\\n/)[1];
  const pwd = offer.sdp.match(/a=ice-pwd:(.*)\\r\\n/)[1];
  const r = await fetch(window.loc, {method: 'PATCH', body:
      'a=ice-ufrag:' + ufrag + '\\r\\na=ice-pwd:' + pwd + '\\r\\n',
      headers: {'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': window.etag}});
  const frag = await r.text();
  if (r.status !== 200) return {error: 'PATCH ' + r.status + ' ' + frag};
  const su = frag.match(/a=ice-ufrag:(.*)\\r\\n/)[1];
  const sp = frag.match(/a=ice-pwd:(.*)\\r\\n/)[1];
  const cands = Array.from(frag.matchAll(/a=candidate:.*\\r\\n/g)).map(m => m[0]).join('');
  const sdp = pc.remoteDescription.sdp
      .replace(/a=ice-ufrag:.*\\r\\n/g, 'a=ice-ufrag:' + su + '\\r\\n')
      .replace(/a=ice-pwd:.*\\r\\n/g, 'a=ice-pwd:' + sp + '\\r\\n')
      .replace(/a=candidate:.*\\r\\n/g, '').replace(/a=end-of-candidates\\r\\n/g, '')
      .replace(/(m=.*\\r\\n)/g, '$1' + cands + 'a=end-of-candidates\\r\\n');
  await pc.setRemoteDescription({type: 'answer', sdp});
  const old = window.etag;
  window.etag = r.headers.get('ETag');
  return {ok: true, etag_changed: old !== window.etag};
}"""

#: START_JS plus the ETag of the 201 (the restart's If-Match)
START_ETAG_JS = START_JS.replace(
    "window.loc = r.headers.get('Location');",
    "window.loc = r.headers.get('Location'); window.etag = r.headers.get('ETag');")


def frames(page: Any) -> int:
    s = page.call(STATS_JS)
    return s["video"]["framesDecoded"] if s["video"] else 0


def viewer_namespace(workdir: str) -> tuple[subprocess.Popen[bytes], str]:
    """A network namespace for the browser alone: a holder process, the veth's viewer end
    (``vb``, 10.200.0.2) moved into it; returns (holder, a chromium wrapper running there)."""
    holder = subprocess.Popen(["unshare", "-n", "sleep", "600"])
    netns = f"/proc/{holder.pid}/ns/net"
    wait(lambda: os.readlink(netns) != os.readlink("/proc/self/ns/net"), 5, "the namespace")
    subprocess.run(["ip", "link", "set", "vb", "netns", str(holder.pid)], check=True)
    for cmd in ("ip link set lo up", f"ip addr add {VIEWER}/24 dev vb", "ip link set vb up"):
        subprocess.run(["nsenter", f"--net={netns}", *cmd.split()], check=True)
    wrapper = os.path.join(workdir, "chromium-in-viewer-ns")
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\nexec nsenter --net={netns} {CHROMIUM} "$@"\n')
    os.chmod(wrapper, 0o755)
    return holder, wrapper


def api(method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return browser_session.api(method, path, body)


def nft(rules: list[str], netns: str = "") -> None:
    """Load ``rules`` (chains of one table) here, or in the namespace of file ``netns``."""
    script = "table inet issue21 {\n" + "\n".join(rules) + "\n}\n"
    enter = ["nsenter", f"--net={netns}"] if netns else []
    subprocess.run([*enter, "nft", "-f", "-"], input=script.encode(), check=True)


def lavfi_process(name: str, codecs: list[str]) -> dict[str, Any]:
    webrtc: dict[str, Any] = {"enabled": True}
    if codecs:
        webrtc["video_codecs"] = codecs
    return {
        "id": name,
        "input": [{"id": "v", "address": "testsrc2=size=320x240:rate=25",
                   "options": ["-re", "-f", "lavfi"]},
                  {"id": "a", "address": "sine=frequency=440:sample_rate=48000",
                   "options": ["-re", "-f", "lavfi"]}],
        "output": [{"id": "null", "address": "-", "options": ["-map", "0:v", "-f", "null"]}],
        "webrtc": webrtc,
    }


def viewer_state(name: str) -> dict[str, Any]:
    state = api("GET", f"/api/v3/process/{name}/state")[1].get("webrtc") or {}
    viewers = state.get("viewers") or []
    return viewers[0] if viewers else {}


def closed_viewer(name: str) -> dict[str, Any]:
    state = api("GET", f"/api/v3/process/{name}/state")[1].get("webrtc") or {}
    closed = state.get("closed_viewers") or []
    return closed[-1] if closed else {}


def restart(page: ChromiumPage, holder: subprocess.Popen[bytes], result: dict[str, Any]
            ) -> None:
    page.goto(f"http://{HOST}:{PORT}/")
    started = page.call(START_ETAG_JS, "/api/v3/process/cam/whep")
    if started.get("error"):
        raise RuntimeError(started["error"])
    wait(lambda: frames(page) > 0, 30, "the first decoded frame")
    time.sleep(1)
    result["before"] = viewer_state("cam")
    netns = f"--net=/proc/{holder.pid}/ns/net"
    subprocess.run(["nsenter", netns, "ip", "addr", "del", f"{VIEWER}/24", "dev", "vb"],
                   check=True)
    subprocess.run(["nsenter", netns, "ip", "addr", "add", f"{MOVED}/24", "dev", "vb"],
                   check=True)
    time.sleep(1.0)  # the old path is dead: frames stop
    stalled = frames(page)
    time.sleep(0.5)
    result["frames_while_moved"] = frames(page) - stalled
    t0 = time.monotonic()
    result["restart"] = page.call(RESTART_JS)
    if result["restart"].get("error"):
        raise RuntimeError(result["restart"]["error"])
    base = frames(page)
    wait(lambda: frames(page) > base + 5, 10, "frames after the restart", interval=0.05)
    result["resumed_after"] = time.monotonic() - t0
    time.sleep(2)
    result["after"] = viewer_state("cam")
    state = api("GET", "/api/v3/process/cam/state")[1].get("webrtc") or {}
    result["sessions"] = len(state.get("viewers") or []) + len(state.get("closed_viewers") or [])


def turn_namespace() -> tuple[subprocess.Popen[bytes], str]:
    """A network namespace for coturn: a second veth pair, 10.201.0.1 here (which routes),
    10.201.0.2 there (default route back through here)."""
    holder = subprocess.Popen(["unshare", "-n", "sleep", "600"])
    netns = f"/proc/{holder.pid}/ns/net"
    wait(lambda: os.readlink(netns) != os.readlink("/proc/self/ns/net"), 5, "the namespace")
    for cmd in ("ip link add vc type veth peer name vd", "ip addr add 10.201.0.1/24 dev vc",
                "ip link set vc up", f"ip link set vd netns {holder.pid}"):
        subprocess.run(cmd.split(), check=True)
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:  # this namespace's own
        f.write("1")
    for cmd in ("ip link set lo up", f"ip addr add {TURN}/24 dev vd", "ip link set vd up",
                "ip route add default via 10.201.0.1"):
        subprocess.run(["nsenter", f"--net={netns}", *cmd.split()], check=True)
    return holder, netns


def run(scenario: str, workdir: str, result: dict[str, Any]) -> None:
    env: dict[str, str] = {}
    turn_proc = None
    holders: list[subprocess.Popen[bytes]] = []
    if scenario in ("chromium-tcp", "firefox-tcp", "gstreamer-tcp"):
        # every datagram of the network (FFmpeg's RTP to the server on 127.0.0.1 stays)
        nft(["chain out { type filter hook output priority 0; "
             "ip saddr 10.200.0.0/24 meta l4proto udp counter drop; "
             "ip daddr 10.200.0.0/24 meta l4proto udp counter drop; "
             "meta nfproto ipv6 meta l4proto udp counter drop; }"])
        env["CORE_WEBRTC_TCP_ADDRESS"] = f"{HOST}:{TCP_PORT}"
    elif scenario == "chromium-turn":
        turn_holder, turn_ns = turn_namespace()
        holders.append(turn_holder)
        turn_proc = subprocess.Popen(
            ["nsenter", f"--net={turn_ns}", "turnserver", "-n", f"--listening-ip={TURN}", f"--relay-ip={TURN}",
             "--listening-port=3478", "--use-auth-secret", f"--static-auth-secret={TURN_SECRET}",
             "--realm=issue21.test", "--no-tls", "--no-dtls", "--no-cli", "--fingerprint",
             "--min-port=49152", "--max-port=49200", "--log-file=stdout", "--simple-log"],
            stdout=open(os.path.join(workdir, "turnserver.log"), "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT)
        result["turn_pid"] = turn_proc.pid
        env["CORE_WEBRTC_ICE_SERVERS"] = json.dumps(
            [{"urls": f"turn:{TURN}:3478?transport=udp", "secret": TURN_SECRET, "ttl": 600}])
    host = HOST
    server_env = {
        **os.environ, **env,
        "CORE_API_ADDRESS": f"{host}:{PORT}", "CORE_API_ALLOW_PUBLIC_BIND": "true",
        "CORE_WEBRTC_ENABLE": "true", "CORE_WEBRTC_BIND_ADDRESS": host,
        "CORE_WEBRTC_PUBLIC_IP": host, "CORE_WEBRTC_UDP_MUX_PORT": str(UDP_PORT),
        "CORE_DEMO_ENABLE": "false",
        "CORE_DB_DIR": os.path.join(workdir, "db"),
        "CORE_STORAGE_DISK_DIR": os.path.join(workdir, "data"),
    }
    server = subprocess.Popen([sys.executable, "-m", "trio_core"], env=server_env, cwd=workdir,
                              stdout=subprocess.DEVNULL, stderr=open(  # noqa: SIM115
                                  os.path.join(workdir, "server.log"), "wb"))
    ff_proc = holder = None
    chromium = CHROMIUM
    if scenario in ("chromium-restart", "chromium-turn"):
        holder, chromium = viewer_namespace(workdir)
    if scenario == "chromium-turn":  # the viewer reaches coturn and the HTTP API, nothing else
        subprocess.run(["nsenter", f"--net=/proc/{holder.pid}/ns/net",  # type: ignore[union-attr]
                        "ip", "route", "add", "10.201.0.0/24", "via", HOST], check=True)
        nft([f"chain out {{ type filter hook output priority 0; policy drop; oif lo accept; "
             f"ip daddr {TURN} accept; ip daddr {HOST} tcp dport {PORT} accept; }}"],
            f"/proc/{holder.pid}/ns/net")  # type: ignore[union-attr]
    try:
        wait(lambda: api("GET", "/api")[0] == 200, 30, "the API")
        codecs = ["vp8"] if scenario.startswith("firefox") else []
        api("POST", "/api/v3/process", lavfi_process("cam", codecs))
        wait(lambda: (api("GET", "/api/v3/process/cam/state")[1].get("webrtc") or {}).get("live"),
             30, "the process to be live")
        if scenario == "gstreamer-tcp":
            result["case"] = play_gstreamer("cam")
            result["viewer"] = closed_viewer("cam")
            return
        if scenario == "firefox-tcp":
            ff_proc, ff = firefox(workdir)
            try:
                result["browser"] = ff.session_capabilities.get("browserVersion")
                page = FirefoxPage(ff)
                result["case"] = play(page, "cam")
                result["viewer"] = closed_viewer("cam")
            finally:
                ff.delete_session()
            return
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                result["browser"] = browser.version
                if scenario == "chromium-tcp":
                    page = ChromiumPage(browser.new_page())
                    result["case"] = play(page, "cam")
                    result["viewer"] = closed_viewer("cam")
                elif scenario == "chromium-restart":
                    restart(ChromiumPage(browser.new_page()), holder, result)  # type: ignore[arg-type]
                else:  # chromium-turn
                    raw = browser.new_page()
                    raw.goto(f"http://{HOST}:{PORT}/player/cam", wait_until="domcontentloaded")

                    def stats() -> dict[str, Any]:
                        return raw.evaluate("window.playerStats ? window.playerStats() : null")

                    first = wait(lambda: (s := stats()) and s.get("framesDecoded", 0) > 0 and s,
                                 40, "the first decoded frame through the relay")
                    time.sleep(3)
                    result["frames_first"] = first["framesDecoded"]
                    result["frames_later"] = stats()["framesDecoded"]
                    result["viewer"] = viewer_state("cam")
            finally:
                browser.close()
    finally:
        try:
            with open(os.path.join(workdir, "server.log"), "rb") as f:
                result["server_log_tail"] = f.read()[-1500:].decode(errors="replace")
        except OSError:
            pass
        for proc in (ff_proc, turn_proc, server, holder, *holders):
            if proc is None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> int:
    scenario = sys.argv[1]
    network_up()
    workdir = tempfile.mkdtemp(prefix="trio-core-ice-")
    result: dict[str, Any] = {"error": None, "scenario": scenario}
    try:
        run(scenario, workdir, result)
    except Exception as exc:  # noqa: BLE001 - reported to the test
        result["error"] = f"{type(exc).__name__}: {exc}"
        if scenario == "chromium-turn":
            try:
                with open(os.path.join(workdir, "turnserver.log"), "rb") as f:
                    result["turn_log_tail"] = f.read()[-1500:].decode(errors="replace")
            except OSError:
                pass
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
