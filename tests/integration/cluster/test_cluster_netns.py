"""The cluster with every node in its own network namespace (root): Redis and HAProxy in a
``lab`` namespace on a bridge, three trio-core nodes on their own addresses, the test
reaching HAProxy over a veth (tests/helpers/cluster.py ``Lab``). Processes created through
HAProxy spread; one node's traffic to Redis is dropped with nft inside its namespace -> it
stops its FFmpegs before its leases' TTL runs out, the others take over; removing the rule
heals it, and no process ever runs twice (/proc census every 200 ms)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import trio

from tests.helpers.api import Api
from tests.helpers.cluster import (
    HAPROXY,
    REDIS,
    Census,
    NodeProcess,
    cheap_process,
    ffmpegs_of,
    haproxy_config,
    lab,
    node_env,
    ns_popen,
    started_nodes,
    wait_port,
)
from tests.helpers.server_process import server_env

pytestmark = [pytest.mark.slow, pytest.mark.root, pytest.mark.xdist_group("cluster")]

LEASE = 3
NAMES = ["n1", "n2", "n3"]
REDIS_PORT = 6379
API_PORT = 8080
LB_PORT = 8080


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
async def test_nodes_in_namespaces_partitioned_by_nft(tmp_path: Path, ffmpeg: str) -> None:
    with lab(NAMES) as net:
        log = open(tmp_path / "lab.log", "ab")  # noqa: SIM115 - closed below
        redis = ns_popen(net.lab, [REDIS, "--port", str(REDIS_PORT), "--bind", net.bridge_ip,
                                   "--protected-mode", "no",  # a private namespace
                                   "--save", "", "--dir", str(tmp_path)], stdout=log, stderr=log)
        (tmp_path / "haproxy.cfg").write_text(haproxy_config(
            LB_PORT, dict.fromkeys(NAMES, API_PORT), bind=net.lab_ip, hosts=net.node_ip))
        lb = ns_popen(net.lab, [HAPROXY, "-db", "-f", str(tmp_path / "haproxy.cfg")],
                      stdout=log, stderr=log)
        try:
            nodes = []
            for name in NAMES:
                env = server_env(tmp_path / name, ffmpeg, CORE_WEBRTC_ENABLE="false")
                env = node_env(env, node_id=name, api_port=API_PORT, redis_port=REDIS_PORT,
                               lease=LEASE)
                env.update({"CORE_API_ADDRESS": f"{net.node_ip[name]}:{API_PORT}",
                            "CORE_CLUSTER_ADDRESS": f"http://{net.node_ip[name]}:{API_PORT}",
                            "CORE_CLUSTER_REDIS_URL": f"redis://{net.bridge_ip}:{REDIS_PORT}/0",
                            "CORE_API_ALLOW_PUBLIC_BIND": "true"})  # a private namespace
                nodes.append(NodeProcess(name, env, tmp_path / f"{name}.log", netns=net.ns[name]))
            async with started_nodes(nodes):
                await trio.to_thread.run_sync(wait_port, LB_PORT, 10.0, net.lab_ip)
                api = Api(f"http://{net.lab_ip}:{LB_PORT}")
                census = Census({n.name: n.pid for n in nodes})
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(census.run)
                    ids = {f"ns{i:02d}" for i in range(9)}
                    for pid in sorted(ids):
                        for _ in range(20):  # HAProxy needs a moment to see the nodes healthy
                            resp = await api.post("/api/v3/process", cheap_process(pid))
                            if resp.status_code != 503:
                                break
                            await trio.sleep(0.25)
                        assert resp.status_code == 200, resp.text

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
        finally:
            for proc in (lb, redis):
                proc.kill()
                proc.wait()
            log.close()
