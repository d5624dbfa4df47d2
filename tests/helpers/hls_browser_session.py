"""Headless Chromium plays a process's HLS output through the dashboard (run as a subprocess).

``python -m tests.helpers.hls_browser_session <base url> <process id>``: opens the dashboard at
``<base>/``, follows the process's "▶ HLS" link to the HLS player page (hls.js from
``/assets/hls.min.js``, playlist and segments from ``/memfs``), waits until the video plays
and samples ``currentTime`` and the decoded frame count twice, 3 s apart. Prints one JSON
line with what it observed (the test asserts on it). Debian's Chromium via playwright (no
downloaded browser). HTTP on 127.0.0.1 only, so no network namespace is needed.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--autoplay-policy=no-user-gesture-required"]

SAMPLE = """() => {
  const v = document.querySelector('video');
  const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : {};
  return {time: v.currentTime, frames: q.totalVideoFrames || 0, width: v.videoWidth,
          hlsjs: !!window.Hls, status: document.getElementById('status').textContent};
}"""


def wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise TimeoutError(f"timed out waiting for {what}")


def main() -> int:
    from playwright.sync_api import sync_playwright

    base, process_id = sys.argv[1], sys.argv[2]
    result: dict[str, Any] = {"error": None}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.goto(base + "/", wait_until="domcontentloaded")
                link = page.locator(f"a[href^='/hls/{process_id}']")
                link.wait_for(timeout=30_000)
                result["link_text"] = link.inner_text()
                link.click()
                page.wait_for_url(f"**/hls/{process_id}*", timeout=30_000)
                first = wait(lambda: (s := page.evaluate(SAMPLE)) and s["time"] > 0.5 and s,
                             60, "the video to play")
                time.sleep(3)
                later = page.evaluate(SAMPLE)
                result.update(first=first, later=later, url=page.url)
            finally:
                browser.close()
    except Exception as exc:  # noqa: BLE001 - reported to the test
        result["error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
