"""One browser session against a real trio-core, run *inside* a private network namespace.

Started by ``tests/interop/test_browser.py`` as ``unshare -n python -m tests.helpers.browser_session``:
headless Chromium gathers no ICE candidates on a machine with loopback alone, and no
address but 127.0.0.1 (or a namespace we create) may be a network target. So this script
brings up ``lo`` and a veth pair (10.200.0.1/24 ↔ 10.200.0.2/24) in the new namespace,
starts ``trio-core`` there (API and WebRTC on 10.200.0.1), creates a WebRTC process,
opens the player page in Debian's Chromium (driven by playwright, never a downloaded
browser), waits until ``framesDecoded`` grows and audio packets arrive, stops the process
through the API and waits for the page to report the end. It prints one JSON line with
what it observed; the test asserts on it. Everything it started is stopped on exit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

HOST = "10.200.0.1"
PORT = 8080
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",
]


def network_up() -> None:
    for cmd in (
        "ip link set lo up",
        "ip link add va type veth peer name vb",
        f"ip addr add {HOST}/24 dev va",
        "ip addr add 10.200.0.2/24 dev vb",
        "ip link set va up",
        "ip link set vb up",
    ):
        subprocess.run(cmd.split(), check=True)


def api(method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{HOST}:{PORT}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def wait(predicate: Any, timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 - not up yet
            value = None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}")


def log_tail(workdir: str, size: int = 3000) -> str | None:
    """The last ``size`` bytes of the session server's ``server.log`` (None if unreadable)."""
    try:
        with open(os.path.join(workdir, "server.log"), "rb") as f:
            return f.read()[-size:].decode(errors="replace")
    except OSError:
        return None


def stop(proc: subprocess.Popen[Any]) -> int:
    """Stop a child of the session: SIGTERM, SIGKILL after 15 s; its exit code."""
    proc.terminate()
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def main() -> int:
    from playwright.sync_api import sync_playwright

    network_up()
    workdir = tempfile.mkdtemp(prefix="trio-core-browser-")
    env = {
        **os.environ,
        "CORE_API_ADDRESS": f"{HOST}:{PORT}",
        "CORE_API_ALLOW_PUBLIC_BIND": "true",
        "CORE_WEBRTC_ENABLE": "true",
        "CORE_WEBRTC_BIND_ADDRESS": HOST,
        "CORE_WEBRTC_PUBLIC_IP": HOST,
        "CORE_DEMO_ENABLE": "false",
        "CORE_DB_DIR": os.path.join(workdir, "db"),
        "CORE_STORAGE_DISK_DIR": os.path.join(workdir, "data"),
    }
    result: dict[str, Any] = {"error": None}
    server = subprocess.Popen([sys.executable, "-m", "trio_core"], env=env, cwd=workdir,
                              stdout=subprocess.DEVNULL, stderr=open(  # noqa: SIM115
                                  os.path.join(workdir, "server.log"), "wb"))
    try:
        wait(lambda: api("GET", "/api")[0] == 200, 30, "the API")
        status, _ = api("POST", "/api/v3/process", {
            "id": "cam",
            "input": [
                {"id": "v", "address": "testsrc2=size=320x240:rate=25",
                 "options": ["-re", "-f", "lavfi"]},
                {"id": "a", "address": "sine=frequency=440:sample_rate=48000",
                 "options": ["-re", "-f", "lavfi"]},
            ],
            "output": [{"id": "null", "address": "-", "options": ["-map", "0:v", "-f", "null"]}],
            "webrtc": {"enabled": True},
        })
        result["create_status"] = status
        wait(lambda: (api("GET", "/api/v3/process/cam/state")[1].get("webrtc") or {}).get("live"),
             30, "the process to be live")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.goto(f"http://{HOST}:{PORT}/player/cam", wait_until="domcontentloaded")

                def stats() -> dict[str, Any]:
                    return page.evaluate("window.playerStats ? window.playerStats() : null")

                first = wait(lambda: (s := stats()) and s.get("framesDecoded", 0) > 0 and s,
                             30, "the first decoded frame")
                time.sleep(3)
                later = stats()
                result.update(
                    frames_first=first["framesDecoded"], frames_later=later["framesDecoded"],
                    audio_packets=later.get("audioPacketsReceived", 0),
                    audio_samples=later.get("audioSamples", 0),
                    status_playing=page.inner_text("#status"),
                    state_viewers=len(api("GET", "/api/v3/process/cam/state")[1]["webrtc"]
                                      ["viewers"]),
                )
                result["stop_status"] = api("PUT", "/api/v3/process/cam/command",
                                            {"command": "stop"})[0]
                result["status_ended"] = wait(
                    lambda: (t := page.inner_text("#status")) and "ended" in t.lower() and t,
                    30, "the page to report the end")
            finally:
                browser.close()
    except Exception as exc:  # noqa: BLE001 - reported to the test
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["server_log_tail"] = log_tail(workdir)
    finally:
        result["server_exit"] = stop(server)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
