"""Chromium publishes over WHIP with **all UDP dropped** and reaches the server over ICE-TCP;
a second Chromium page plays the channel (over ICE-TCP too); then the publisher restarts
ICE (medooze ``whip-whep``'s ``WHIPClient.restart()``: ``restartIce()`` + PATCH) and keeps
feeding the same Source. Run *inside* a private network namespace.

Started by ``tests/interop/test_whip_browser.py`` as ``unshare -n python -m
tests.helpers.whip_tcp_session <path of whip.js>``: the veth recipe of
``tests/helpers/browser_session.py`` (server 10.200.0.1), the nft rules of
``tests/helpers/ice_session.py`` (every datagram of 10.200.0.0/24 and all IPv6 UDP dropped),
``webrtc.tcp_address`` 10.200.0.1:8555. Frames the publisher sent and the viewer decoded
are compared over one window before and one window across the restart. Prints one JSON line.
"""

from __future__ import annotations

import base64
import sys
import time
from typing import Any

from tests.helpers.browser_session import (
    CHROMIUM,
    HOST,
    PORT,
    api,
    log_tail,
    network_up,
    stop,
    wait,
)
from tests.helpers.ice_session import nft
from tests.helpers.whip_browser_session import (
    PUB_STATS_JS,
    PUBLISHER_ARGS,
    UNPUBLISH_JS,
    VIEW_STATS_JS,
    play,
    publish,
    start_server,
)

ORIGIN = f"http://{HOST}:{PORT}"
TCP_PORT = 8555

#: the protocol of each page's selected candidate pair (local candidate), "" before one
PROTOCOL_JS = """async (which) => {
  const pc = which === 'pub' ? window.pubs[window.pubs.length - 1].pc : window.pc;
  const stats = await pc.getStats();
  let pair = null; const locals = {};
  stats.forEach(s => { if (s.type === 'local-candidate') locals[s.id] = s;
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = s.selectedCandidatePairId; });
  if (!pair) return '';
  const p = stats.get(pair);
  return p && locals[p.localCandidateId] ? locals[p.localCandidateId].protocol : '';
}"""
#: ``WHIPClient.restart()``; its answer handling joins the sdpfrag's candidate lines with
#: "," (``candidates.join()``), which Chromium refuses ("Invalid SDP line") as soon as there
#: are two (UDP + ICE-TCP): the page repairs exactly that before setRemoteDescription
RESTART_JS = """async () => {
  const p = window.pubs[window.pubs.length - 1];
  const apply = p.pc.setRemoteDescription.bind(p.pc);
  p.pc.setRemoteDescription = (d) => apply(
      {type: d.type, sdp: d.sdp.replaceAll('\\r\\n,a=candidate', '\\r\\na=candidate')});
  const before = p.client.etag;
  try { await p.client.restart(); } catch (e) { return {error: String(e)}; }
  return {ok: true, etag_changed: before !== p.client.etag};
}"""


def window(pub: Any, view: Any, seconds: float) -> dict[str, Any]:
    p0, v0 = pub.evaluate(PUB_STATS_JS), view.evaluate(VIEW_STATS_JS)
    time.sleep(seconds)
    p1, v1 = pub.evaluate(PUB_STATS_JS), view.evaluate(VIEW_STATS_JS)
    return {"sent": p1["framesSent"] - p0["framesSent"],
            "decoded": v1["framesDecoded"] - v0["framesDecoded"],
            "audio": v1["audioPackets"] - v0["audioPackets"], "codec": v1["codec"],
            "state": v1["state"]}


def main() -> int:
    import json

    from playwright.sync_api import sync_playwright

    with open(sys.argv[1], "rb") as f:
        library = base64.b64encode(f.read()).decode()
    network_up()
    nft(["chain out { type filter hook output priority 0; "
         "ip saddr 10.200.0.0/24 meta l4proto udp counter drop; "
         "ip daddr 10.200.0.0/24 meta l4proto udp counter drop; "
         "meta nfproto ipv6 meta l4proto udp counter drop; }"])
    server, workdir = start_server("trio-core-whip-tcp-",
                                   CORE_WEBRTC_TCP_ADDRESS=f"{HOST}:{TCP_PORT}")
    result: dict[str, Any] = {"error": None}
    try:
        wait(lambda: api("GET", "/api")[0] == 200, 30, "the API")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=PUBLISHER_ARGS)
            try:
                result["browser"] = browser.version
                pub = publish(browser, library, result, "published media over ICE-TCP")
                view, _ = play(browser, result, interval=0.05)
                time.sleep(1)
                result["steady"] = window(pub, view, 4)
                result["protocols"] = {"pub": pub.evaluate(PROTOCOL_JS, "pub"),
                                       "view": view.evaluate(PROTOCOL_JS, "view")}
                result["before"] = api("GET", "/api/v3/whip")[1][0]
                result["restart"] = pub.evaluate(RESTART_JS)
                if result["restart"].get("error"):
                    raise RuntimeError(f"restart: {result['restart']['error']}")
                result["across_restart"] = window(pub, view, 4)
                result["after"] = api("GET", "/api/v3/whip")[1][0]
                pub.evaluate(UNPUBLISH_JS)
            finally:
                browser.close()
    except Exception as exc:  # noqa: BLE001 - reported to the test
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        result["server_log_tail"] = log_tail(workdir)
        result["server_exit"] = stop(server)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
