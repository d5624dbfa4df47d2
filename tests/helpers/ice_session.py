"""Browsers behind firewalls and on moving networks (issue 21), run *inside* a private
network namespace.

Started by ``tests/interop/test_ice_tcp_browsers.py`` as ``unshare -n python -m
tests.helpers.ice_session SCENARIO``; like ``tests/helpers/interop_session.py`` it brings up a
veth pair (server 10.200.0.1, viewer 10.200.0.2), runs ``trio-core`` and a lavfi WebRTC
process, and prints one JSON line. Scenarios:

* ``chromium-tcp`` / ``firefox-tcp``: **all UDP of the network is dropped** (nft: every
  datagram from or to 10.200.0.0/24 and all IPv6 UDP; only FFmpeg's loopback RTP into the
  server stays) and the
  server listens for ICE-TCP on 10.200.0.1:8555; a plain ``RTCPeerConnection`` WHEP page
  plays over the ``tcptype passive`` candidate (frames measured as in the interop matrix).
* ``chromium-turn``: Debian's coturn (``turnserver``, TURN REST secret) on 10.200.0.3, no
  ICE-TCP, and nft drops every datagram to or from the WebRTC UDP port unless it comes from
  or goes to coturn's relay address — the only way in is the relay. The server announces
  coturn in ``Link`` headers (``webrtc.ice_servers`` with ``secret``) and the product's
  **player page** reads them into ``iceServers``.

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
    ChromiumPage,
    FirefoxPage,
    firefox,
    play,
)

TCP_PORT = 8555
UDP_PORT = 8556
TURN = "10.200.0.3"
TURN_SECRET = "issue21-shared-secret"

HOST = browser_session.HOST


def api(method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return browser_session.api(method, path, body)


def nft(rules: list[str]) -> None:
    script = "table inet issue21 {\n" + "\n".join(rules) + "\n}\n"
    subprocess.run(["nft", "-f", "-"], input=script.encode(), check=True)


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


def run(scenario: str, workdir: str, result: dict[str, Any]) -> None:
    env: dict[str, str] = {}
    turn_proc = None
    if scenario in ("chromium-tcp", "firefox-tcp"):
        # every datagram of the network (FFmpeg's RTP to the server on 127.0.0.1 stays)
        nft(["chain out { type filter hook output priority 0; "
             "ip saddr 10.200.0.0/24 meta l4proto udp counter drop; "
             "ip daddr 10.200.0.0/24 meta l4proto udp counter drop; "
             "meta nfproto ipv6 meta l4proto udp counter drop; }"])
        env["CORE_WEBRTC_TCP_ADDRESS"] = f"{HOST}:{TCP_PORT}"
    elif scenario == "chromium-turn":
        subprocess.run(["ip", "addr", "add", f"{TURN}/24", "dev", "va"], check=True)
        nft([f"chain out {{ type filter hook output priority 0; "
             f"udp dport {UDP_PORT} ip saddr != {TURN} counter drop; "
             f"udp sport {UDP_PORT} ip daddr != {TURN} counter drop; }}"])
        turn_proc = subprocess.Popen(
            ["turnserver", "-n", f"--listening-ip={TURN}", f"--relay-ip={TURN}",
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
    ff_proc = None
    try:
        wait(lambda: api("GET", "/api")[0] == 200, 30, "the API")
        codecs = ["vp8"] if scenario.startswith("firefox") else []
        api("POST", "/api/v3/process", lavfi_process("cam", codecs))
        wait(lambda: (api("GET", "/api/v3/process/cam/state")[1].get("webrtc") or {}).get("live"),
             30, "the process to be live")
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
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                result["browser"] = browser.version
                if scenario == "chromium-tcp":
                    page = ChromiumPage(browser.new_page())
                    result["case"] = play(page, "cam")
                    result["viewer"] = closed_viewer("cam")
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
        result["metrics_tcp"] = None
        try:
            with open(os.path.join(workdir, "server.log"), "rb") as f:
                result["server_log_tail"] = f.read()[-1500:].decode(errors="replace")
        except OSError:
            pass
        for proc in (ff_proc, turn_proc, server):
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
