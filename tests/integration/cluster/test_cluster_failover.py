"""Three trio-core nodes (child processes, loopback with distinct ports — no network
namespaces), Debian's redis-server and HAProxy in front of the API (issue 20): processes
created through HAProxy spread over the nodes; ``kill -9`` of a node moves its processes
within lease + 5 s; the node restarts and rejoins; a node cut off from Redis (its Redis
connection black-holed by a proxy the test controls) stops its FFmpegs before its leases
expire and healing makes no duplicate. A census of every node's FFmpeg children (/proc,
every 200 ms) checks that no process ever runs twice."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import trio

from tests.helpers.api import Api, free_port
from tests.helpers.cluster import (
    Census,
    NodeProcess,
    cheap_process,
    haproxy,
    node_env,
    proxies,
    redis_server,
    started_nodes,
)
from tests.helpers.server_process import server_env

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cluster")]

LEASE = 3
NAMES = ("n1", "n2", "n3")


def make_nodes(tmp: Path, ffmpeg: str, redis_ports: dict[str, int]) -> list[NodeProcess]:
    nodes = []
    for name in NAMES:
        base = server_env(tmp / name, ffmpeg, CORE_WEBRTC_ENABLE="false")
        env = node_env(base, node_id=name, api_port=free_port(), redis_port=redis_ports[name],
                       lease=LEASE)
        nodes.append(NodeProcess(name, env, tmp / f"{name}.log"))
    return nodes


def api_port(node: NodeProcess) -> int:
    return int(node.env["CORE_API_ADDRESS"].rsplit(":", 1)[1])


def totals(per_node: dict[str, Counter[str]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for counts in per_node.values():
        out.update(counts)
    return out


async def wait_running(census: Census, ids: set[str], timeout: float,
                       without: str | None = None) -> float:
    """Seconds until every id in ``ids`` has exactly one FFmpeg (none on ``without``)."""
    start = trio.current_time()
    with trio.fail_after(timeout):
        while True:
            per_node = census.last
            total = totals(per_node)
            if (per_node and set(total) >= ids and all(total[i] == 1 for i in ids)
                    and (without is None or not per_node.get(without))):
                return trio.current_time() - start
            await trio.sleep(0.1)


async def test_spread_kill_and_rejoin_through_haproxy(tmp_path: Path, ffmpeg: str) -> None:
    with redis_server(tmp_path / "redis") as (_, rport):
        nodes = make_nodes(tmp_path, ffmpeg, dict.fromkeys(NAMES, rport))
        async with started_nodes(nodes):
            with haproxy(tmp_path, {n.name: api_port(n) for n in nodes}) as hport:
                api = Api(f"http://127.0.0.1:{hport}")
                census = Census({n.name: n.pid for n in nodes})
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(census.run)
                    ids = {f"ch{i:02d}" for i in range(30)}
                    for pid in sorted(ids):
                        resp = await api.post("/api/v3/process", cheap_process(pid))
                        assert resp.status_code == 200, resp.text
                    await wait_running(census, ids, timeout=20)
                    load = {name: len(c) for name, c in census.last.items()}
                    assert min(load.values()) >= 1 and max(load.values()) / min(load.values()) <= 2, load

                    # the API through HAProxy: every process, its state from the owner
                    listed = (await api.get("/api/v3/process?filter=state")).json()
                    assert {p["id"] for p in listed} == ids
                    assert {p["state"]["exec"] for p in listed} == {"running"}

                    # kill -9 the busiest node
                    victim = max(nodes, key=lambda n: load[n.name])
                    lost = set(census.last[victim.name])
                    victim.kill()
                    elapsed = await wait_running(census, ids, timeout=LEASE + 5 + 2,
                                                 without=victim.name)
                    assert elapsed <= LEASE + 5, elapsed
                    survivors = {n: c for n, c in census.last.items() if n != victim.name}
                    assert lost <= set(totals(survivors))

                    # it restarts (same id, same db dir) and rejoins; rebalancing moves some back
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


async def test_partition_from_redis_fences_and_heals(tmp_path: Path, ffmpeg: str) -> None:
    with redis_server(tmp_path / "redis") as (_, rport):
        async with proxies(rport, len(NAMES)) as links:
            link = {name: links[i] for i, name in enumerate(NAMES)}
            nodes = make_nodes(tmp_path, ffmpeg, {name: link[name].port for name in NAMES})
            async with started_nodes(nodes):
                api = Api(f"http://127.0.0.1:{api_port(nodes[0])}")
                census = Census({n.name: n.pid for n in nodes})
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(census.run)
                    ids = {f"pt{i:02d}" for i in range(12)}
                    for pid in sorted(ids):
                        resp = await api.post("/api/v3/process", cheap_process(pid))
                        assert resp.status_code == 200, resp.text
                    await wait_running(census, ids, timeout=20)
                    victim = max(NAMES, key=lambda n: len(census.last[n]))
                    assert census.last[victim]
                    link[victim].freeze()
                    frozen_at = trio.current_time()
                    # the cut-off node stops every FFmpeg before its leases can expire
                    with trio.fail_after(LEASE):
                        while census.last.get(victim):
                            await trio.sleep(0.05)
                    stopped_after = trio.current_time() - frozen_at
                    assert stopped_after < LEASE - 0.5, stopped_after
                    # the others take over
                    await wait_running(census, ids, timeout=LEASE + 5, without=victim)
                    # heal: it reconnects, rejoins, no process ever runs twice
                    link[victim].heal()

                    async def back() -> bool:
                        about = (await api.get("/api/v3/cluster")).json()
                        return any(n["id"] == victim and n["status"] == "online"
                                   for n in about["nodes"]) and bool(census.last.get(victim))
                    with trio.fail_after(20):
                        while not await back():
                            await trio.sleep(0.2)
                    await wait_running(census, ids, timeout=10)
                    nursery.cancel_scope.cancel()
                assert census.duplicates == [], census.duplicates[:5]
