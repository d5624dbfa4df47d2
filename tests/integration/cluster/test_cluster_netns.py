"""The cluster with every node in its own network namespace (root): Redis and HAProxy in a
``lab`` namespace on a bridge, three trio-core nodes on their own addresses (API and WebRTC
media), the test reaching HAProxy and the nodes over a veth routed through ``lab``
(tests/helpers/cluster.py ``Lab``). A /proc census of every node's FFmpegs (every 200 ms)
checks that no process ever runs twice.

* spread, ``kill -9`` and rejoin: 30 processes created through HAProxy spread (max/min ≤ 2);
  the node that runs a WebRTC process dies -> its processes run elsewhere within lease + 5 s;
  an aiortc WHEP viewer POSTs through HAProxy (307 to the owner's own address,
  ``cluster.relay`` off) and gets video before and after; the node restarts and rejoins.
* partition: one node's traffic to Redis is dropped with nft inside its namespace -> it stops
  its FFmpegs before its leases' TTL runs out, the others take over; removing the rule heals
  it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
import trio

from tests.helpers.aiortc_viewer import run_aiortc_viewer
from tests.helpers.api import Api
from tests.helpers.cluster import (
    Census,
    cheap_process,
    ffmpegs_of,
    lab,
    lab_services,
    started_nodes,
    totals,
    wait_port,
    wait_running,
)
from tests.helpers.whep import webrtc_process

pytestmark = [pytest.mark.slow, pytest.mark.root, pytest.mark.xdist_group("cluster"),
              pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")]

LEASE = 3
NAMES = ["n1", "n2", "n3"]
REDIS_PORT = 6379
API_PORT = 8080
LB_PORT = 8080


async def create(api: Api, config: dict[str, object]) -> None:
    for _ in range(20):  # HAProxy needs a moment to see the nodes healthy
        resp = await api.post("/api/v3/process", config)
        if resp.status_code != 503:
            break
        await trio.sleep(0.25)
    assert resp.status_code == 200, resp.text


async def watch_through(base: str, process_id: str, host_ip: str, owner_ip: str
                        ) -> dict[str, object]:
    """An aiortc viewer (in the test's namespace, ICE from ``host_ip``) whose WHEP offer is
    POSTed to ``base`` (HAProxy); a node that does not run the process answers 307 (no
    ``cluster.relay``), the viewer follows it to ``owner_ip``, and media flows between the
    viewer and that node's own address."""
    async def answer(offer: str) -> str:
        def post() -> httpx.Response:
            return httpx.post(f"{base}/api/v3/process/{process_id}/whep", content=offer,
                              headers={"Content-Type": "application/sdp"},
                              follow_redirects=True, timeout=15)
        resp = await trio.to_thread.run_sync(post)
        assert resp.status_code == 201, resp.text
        assert all(r.status_code == 307 for r in resp.history), resp.history
        if resp.history:  # HAProxy picked another node: it redirected to the owner
            assert resp.url.host == owner_ip, (resp.url, resp.history)
        # the answer (from the owner) offers only the owner's own address for media
        candidates = [ln for ln in resp.text.splitlines() if ln.startswith("a=candidate")]
        assert candidates and all(f" {owner_ip} " in ln for ln in candidates), candidates
        return resp.text
    return await run_aiortc_viewer(["--stdio", "--duration", "1.5", "--video-only",
                                    "--host-address", host_ip], answer,
                                   timeout=40)


async def test_spread_kill_and_rejoin_through_haproxy(tmp_path: Path, ffmpeg: str) -> None:
    with lab(NAMES) as net, lab_services(net, tmp_path, redis_port=REDIS_PORT, lb_port=LB_PORT,
                                         api_ports=dict.fromkeys(NAMES, API_PORT)):
        nodes = [net.node(name, tmp_path, ffmpeg, api_port=API_PORT, redis_port=REDIS_PORT,
                          lease=LEASE, webrtc=True) for name in NAMES]
        async with started_nodes(nodes):
            await trio.to_thread.run_sync(wait_port, LB_PORT, 10.0, net.lab_ip)
            base = f"http://{net.lab_ip}:{LB_PORT}"
            api = Api(base)
            census = Census({n.name: n.pid for n in nodes})
            async with trio.open_nursery() as nursery:
                nursery.start_soon(census.run)
                ids = {f"ch{i:02d}" for i in range(30)}
                for pid in sorted(ids):
                    await create(api, cheap_process(pid))
                await create(api, webrtc_process("cam"))
                await wait_running(census, ids, timeout=20)
                load = {name: len(c) for name, c in census.last.items()}

                async def cam_owner() -> str | None:
                    state = (await api.get("/api/v3/process/cam/state")).json()
                    if not (state.get("webrtc") or {}).get("live"):
                        return None
                    return (await api.get("/api/v3/cluster/db/map/process")).json().get("cam")
                with trio.fail_after(20):
                    while (owner := await cam_owner()) is None:
                        await trio.sleep(0.2)
                seen = await watch_through(base, "cam", net.host_ip, net.node_ip[owner])
                assert seen["video_frames"], seen
                # (whichever node HAProxy picked: a node that does not run it redirects)
                other = next(n for n in NAMES if n != owner)
                resp = await Api(f"http://{net.node_ip[other]}:{API_PORT}").request(
                    "POST", "/api/v3/process/cam/whep", content=b"v=0\r\n",
                    headers={"Content-Type": "application/sdp"})
                assert resp.status_code == 307, resp.text
                assert httpx.URL(resp.headers["location"]).host == net.node_ip[owner]
                assert min(load.values()) >= 1 and max(load.values()) / min(load.values()) <= 2, load

                # the API through HAProxy: every process, its state from the owner
                listed = (await api.get("/api/v3/process?filter=state")).json()
                assert {p["id"] for p in listed} == ids | {"cam"}
                assert {p["state"]["exec"] for p in listed} == {"running"}

                # kill -9 the node that runs the WebRTC process (and its viewer)
                victim = next(n for n in nodes if n.name == owner)
                lost = set(census.last[victim.name])
                victim.kill()
                elapsed = await wait_running(census, ids, timeout=LEASE + 5 + 2,
                                             without=victim.name)
                assert elapsed <= LEASE + 5, elapsed
                survivors = {n: c for n, c in census.last.items() if n != victim.name}
                assert lost <= set(totals(survivors))
                # the viewer comes back through HAProxy and gets video from the new owner
                with trio.fail_after(20):
                    while (owner := await cam_owner()) in (None, victim.name):
                        await trio.sleep(0.2)
                seen = await watch_through(base, "cam", net.host_ip, net.node_ip[owner])
                assert seen["video_frames"], seen

                # it restarts (same id, address and db dir) and rejoins; rebalancing moves
                # some back
                await victim.start()
                census.pids[victim.name] = victim.pid

                async def rejoined() -> bool:
                    nodes_json = (await api.get("/api/v3/cluster/node")).json()
                    online = {n["id"] for n in nodes_json if n["status"] == "online"}
                    return online == set(NAMES) and bool(census.last.get(victim.name))
                with trio.fail_after(20):
                    while not await rejoined():
                        await trio.sleep(0.2)
                await wait_running(census, ids, timeout=10)
                nursery.cancel_scope.cancel()
            assert census.samples > 20
            assert census.duplicates == [], census.duplicates[:5]


async def test_nodes_in_namespaces_partitioned_by_nft(tmp_path: Path, ffmpeg: str) -> None:
    with lab(NAMES) as net, lab_services(net, tmp_path, redis_port=REDIS_PORT, lb_port=LB_PORT,
                                         api_ports=dict.fromkeys(NAMES, API_PORT)):
        nodes = [net.node(name, tmp_path, ffmpeg, api_port=API_PORT, redis_port=REDIS_PORT,
                          lease=LEASE) for name in NAMES]
        async with started_nodes(nodes):
            await trio.to_thread.run_sync(wait_port, LB_PORT, 10.0, net.lab_ip)
            api = Api(f"http://{net.lab_ip}:{LB_PORT}")
            census = Census({n.name: n.pid for n in nodes})
            async with trio.open_nursery() as nursery:
                nursery.start_soon(census.run)
                ids = {f"ns{i:02d}" for i in range(9)}
                for pid in sorted(ids):
                    await create(api, cheap_process(pid))

                async def all_once(without: str | None = None) -> bool:
                    per = census.last
                    total: dict[str, int] = {}
                    for counts in per.values():
                        for pid, n in counts.items():
                            total[pid] = total.get(pid, 0) + n
                    return (set(total) >= ids and all(total[i] == 1 for i in ids)
                            and (without is None or not per.get(without)))
                with trio.fail_after(20):
                    while not await all_once():
                        await trio.sleep(0.1)
                load = {name: len(c) for name, c in census.last.items()}
                assert min(load.values()) >= 1, load

                victim = max(NAMES, key=lambda n: load[n])
                held = sorted(census.last[victim])
                net.cut(victim, REDIS_PORT)
                frozen_at = trio.current_time()
                ttl_ms = await trio.to_thread.run_sync(lambda: [int(subprocess.run(
                    ["ip", "netns", "exec", net.lab, "redis-cli", "-h", net.bridge_ip,
                     "-p", str(REDIS_PORT), "pttl", f"trio-core:lease:{pid}"],
                    capture_output=True, text=True, check=True).stdout) for pid in held])
                assert all(t > 0 for t in ttl_ms), ttl_ms
                expiry = frozen_at + min(ttl_ms) / 1000
                victim_pid = next(n.pid for n in nodes if n.name == victim)
                with trio.fail_after(LEASE):
                    while await trio.to_thread.run_sync(ffmpegs_of, victim_pid):
                        await trio.sleep(0.02)
                assert trio.current_time() < expiry
                with trio.fail_after(LEASE + 5):
                    while not await all_once(without=victim):
                        await trio.sleep(0.1)
                net.heal(victim)
                with trio.fail_after(20):  # it comes back and takes its share again
                    while not census.last.get(victim) or not await all_once():
                        await trio.sleep(0.2)
                nursery.cancel_scope.cancel()
            assert census.samples > 10
            assert census.duplicates == [], census.duplicates[:5]
