"""Real parts for the cluster tests (issue 20): Debian's ``redis-server`` on a 127.0.0.1
port, a TCP proxy the test can freeze (a node's partition from Redis), trio-core nodes as
child processes, a /proc census of the FFmpegs each node runs (by the process id the test
put into each FFmpeg's command line), and (root) a :class:`Lab` of network namespaces: Redis
and HAProxy in ``lab``, each node in its own namespace on its own address, routed to the
test's namespace so WHEP redirects and media reach the nodes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import trio

from tests.helpers.api import free_port
from tests.helpers.server_process import server_env

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
#: the tests' FFmpegs carry ``-metadata title=<TAG><process id>`` (found in /proc cmdline)
TAG = "clustertest-"


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    import time
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def redis_server(tmp: Path, port: int | None = None, *, persist: bool = False
                 ) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``redis-server`` on 127.0.0.1; yields it and its port. Without ``persist`` nothing is
    saved; with it a snapshot is written at shutdown (``SHUTDOWN``/SIGTERM) and loaded at
    start from ``tmp``."""
    port = port or free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    save = ["--save", "3600 1"] if persist else ["--save", ""]
    with open(tmp / "redis.log", "ab") as log:
        proc = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", *save,
                                 "--appendonly", "no", "--dir", str(tmp)],
                                stdout=log, stderr=log)
    try:
        wait_port(port)
        yield proc, port
    finally:
        proc.kill()
        proc.wait()


def haproxy_config(port: int, backends: dict[str, int], *, bind: str = "127.0.0.1",
                   hosts: dict[str, str] | None = None, public_check: bool = False) -> str:
    """HAProxy in front of the nodes' APIs (health: ``GET /api/v3/cluster/healthy``; with
    ``public_check``, for nodes with API auth on, ``GET /api`` answering 200)."""
    check = ("    option httpchk GET /api\n    http-check expect status 200" if public_check
             else "    option httpchk GET /api/v3/cluster/healthy\n    http-check expect string true")
    hosts = hosts or {}
    servers = "\n".join(
        f"    server {name} {hosts.get(name, '127.0.0.1')}:{p} check inter 500 fall 2 rise 1"
        for name, p in backends.items())
    return f"""global
    maxconn 512

defaults
    mode http
    timeout connect 1s
    timeout client 20s
    timeout server 20s
    retries 2
    option redispatch

frontend api
    bind {bind}:{port}
    default_backend nodes

backend nodes
    balance roundrobin
{check}
{servers}
"""


@contextmanager
def haproxy(tmp: Path, backends: dict[str, int], port: int | None = None, *,
            public_check: bool = False) -> Iterator[int]:
    """HAProxy on 127.0.0.1 in front of the loopback nodes' APIs (:func:`haproxy_config`);
    yields its port once it accepts connections; killed on exit."""
    port = port or free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "haproxy.cfg").write_text(haproxy_config(port, backends, public_check=public_check))
    with open(tmp / "haproxy.log", "ab") as log:
        proc = subprocess.Popen([HAPROXY, "-db", "-f", str(tmp / "haproxy.cfg")],
                                stdout=log, stderr=log)
    try:
        wait_port(port)
        yield port
    finally:
        proc.kill()
        proc.wait()


class FreezableProxy:
    """A TCP proxy 127.0.0.1:port -> upstream; :meth:`freeze` stops forwarding in both
    directions (the node's Redis traffic is black-holed), :meth:`heal` closes the frozen
    connections (the client reconnects) and forwards again."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0
        self.frozen = False
        self._conns: set[trio.CancelScope] = set()

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    def freeze(self) -> None:
        self.frozen = True

    def heal(self) -> None:
        for scope in list(self._conns):
            scope.cancel()
        self.frozen = False

    async def _handle(self, client: trio.SocketStream) -> None:
        if self.frozen:
            await client.aclose()
            return
        with trio.CancelScope() as scope:
            self._conns.add(scope)
            try:
                upstream = await trio.open_tcp_stream("127.0.0.1", self.upstream)
                async with client, upstream, trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, client, upstream)
                    nursery.start_soon(self._pump, upstream, client)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                self._conns.discard(scope)

    async def _pump(self, src: trio.SocketStream, dst: trio.SocketStream) -> None:
        while True:
            while self.frozen:
                await trio.sleep(0.05)
            data = await src.receive_some(65536)
            if not data:
                await dst.send_eof()
                return
            while self.frozen:  # black hole: what arrived while frozen is never delivered
                data = b""
                await trio.sleep(0.05)
            if data:
                await dst.send_all(data)


def node_env(base_env: dict[str, str], *, node_id: str, api_port: int, redis_port: int,
             lease: int = 3, **extra: str) -> dict[str, str]:
    """A cluster node's environment on top of ``server_env``'s."""
    env = dict(base_env)
    env.update({
        "CORE_API_ADDRESS": f"127.0.0.1:{api_port}",
        "CORE_CLUSTER_ENABLE": "true",
        "CORE_CLUSTER_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "CORE_CLUSTER_NODE_ID": node_id,
        "CORE_CLUSTER_ADDRESS": f"http://127.0.0.1:{api_port}",
        "CORE_CLUSTER_LEASE_SECONDS": str(lease),
        # the nodes share one loaded test machine: placement headroom (measured CPU/memory)
        # would be noise here; tests/unit/trio_core/cluster/test_placement.py covers it
        "CORE_CLUSTER_MAX_CPU_USAGE": "0",
        "CORE_CLUSTER_MAX_MEMORY_USAGE": "0",
        **extra,
    })
    return env


def cheap_process(process_id: str, **extra: Any) -> dict[str, Any]:
    """A near-free FFmpeg (silent audio into the null muxer) tagged with its id."""
    cfg: dict[str, Any] = {
        "id": process_id,
        "reference": "cluster-test",
        "options": ["-loglevel", "level+info"],
        "input": [{"id": "in", "address": "anullsrc=r=8000:cl=mono",
                   "options": ["-re", "-f", "lavfi"]}],
        "output": [{"id": "out", "address": "-",
                    "options": ["-metadata", f"title={TAG}{process_id}", "-f", "null"]}],
        "reconnect": True,
        "reconnect_delay_seconds": 1,
        "autostart": True,
    }
    cfg.update(extra)
    return cfg


def ffmpeg_pids_of(server_pid: int) -> dict[str, list[int]]:
    """Process id -> pids of the tagged FFmpegs that are children of ``server_pid`` (/proc)."""
    found: dict[str, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
            if ppid != server_pid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except (OSError, ValueError):
            continue
        for arg in args:
            if arg.startswith(f"title={TAG}".encode()):
                found.setdefault(arg.decode()[len("title=") + len(TAG):], []).append(int(entry))
    return found


def ffmpegs_of(server_pid: int) -> Counter[str]:
    """Process id -> number of tagged FFmpegs that are children of ``server_pid``."""
    return Counter({pid: len(pids) for pid, pids in ffmpeg_pids_of(server_pid).items()})


class Census:
    """Samples every ``interval`` the tagged FFmpegs of some server pids; remembers the worst
    moment (a process id with more than one FFmpeg over all nodes)."""

    def __init__(self, pids: dict[str, int], interval: float = 0.2) -> None:
        self.pids = pids  # node name -> server pid (replaced when a node restarts)
        self.interval = interval
        self.samples = 0
        self.duplicates: list[tuple[float, str, dict[str, int]]] = []
        self.last: dict[str, Counter[str]] = {}

    def sample(self) -> dict[str, Counter[str]]:
        per_node = {name: ffmpegs_of(pid) for name, pid in list(self.pids.items())}
        total: Counter[str] = Counter()
        for counts in per_node.values():
            total.update(counts)
        for pid, n in total.items():
            if n > 1:
                where = {name: c[pid] for name, c in per_node.items() if c[pid]}
                self.duplicates.append((trio.current_time(), pid, where))
        self.samples += 1
        self.last = per_node
        return per_node

    async def run(self) -> None:
        while True:
            await trio.to_thread.run_sync(self.sample)
            await trio.sleep(self.interval)


@asynccontextmanager
async def proxies(upstream: int, n: int) -> AsyncIterator[list[FreezableProxy]]:
    """``n`` freezable proxies to ``upstream``, running while the context is open."""
    async with trio.open_nursery() as nursery:
        out = [FreezableProxy(upstream) for _ in range(n)]
        for proxy in out:
            await nursery.start(proxy.run)
        try:
            yield out
        finally:
            nursery.cancel_scope.cancel()


class NodeProcess:
    """One trio-core node as a child process (``python -m trio_core`` with ``env``)."""

    def __init__(self, name: str, env: dict[str, str], log: Path, netns: str = "") -> None:
        self.name = name
        self.env = env
        self.log = log
        self.netns = netns  # run inside this network namespace (``ip netns exec``: same pid)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        import re
        import sys

        from tests.helpers.server_process import ROOT
        with open(self.log, "ab") as err:
            prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
            self.proc = subprocess.Popen([*prefix, sys.executable, "-m", "trio_core"], env=self.env,
                                         cwd=str(ROOT), stdout=subprocess.PIPE, stderr=err)
        out = self.proc.stdout
        assert out is not None
        with trio.fail_after(40):
            while True:
                line = await trio.to_thread.run_sync(out.readline, abandon_on_cancel=True)
                assert line, f"node {self.name} exited: {self.log.read_text()[-3000:]}"
                if re.search(rb"trio-core listening on (http://\S+)", line):
                    break

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


@asynccontextmanager
async def started_nodes(nodes: list[NodeProcess]) -> AsyncIterator[list[NodeProcess]]:
    """Start ``nodes`` concurrently; SIGTERM (then SIGKILL) them all on exit."""
    try:
        async with trio.open_nursery() as nursery:
            for node in nodes:
                nursery.start_soon(node.start)
        yield nodes
    finally:
        for node in nodes:
            node.terminate()


class Lab:
    """Network namespaces for a cluster (root): ``lab`` holds a bridge (10.77.X.1: Redis,
    HAProxy) with one veth per node namespace (10.77.X.1N), and one veth to this namespace
    (10.78.X.1 here, 10.78.X.2 in ``lab``) so the test reaches HAProxy. :meth:`cut` drops a
    node's TCP traffic to Redis with nft inside that node's namespace; :meth:`heal` removes
    the rule. Everything is deleted by :meth:`close`."""

    def __init__(self, names: list[str]) -> None:
        import secrets
        self.tag = secrets.token_hex(3)
        self.octet = 100 + secrets.randbelow(100)
        self.lab = f"cl{self.tag}"
        self.ns = {name: f"cl{self.tag}{name}" for name in names}
        self.bridge_ip = f"10.77.{self.octet}.1"
        self.node_ip = {name: f"10.77.{self.octet}.{11 + i}" for i, name in enumerate(names)}
        self.host_ip = f"10.78.{self.octet}.1"
        self.lab_ip = f"10.78.{self.octet}.2"

    def _run(self, *cmd: str) -> None:
        subprocess.run(list(cmd), check=True, capture_output=True)

    def ns_run(self, ns: str, *cmd: str) -> None:
        self._run("ip", "netns", "exec", ns, *cmd)

    def open(self) -> None:
        t = self.tag
        self._run("ip", "netns", "add", self.lab)
        self.ns_run(self.lab, "ip", "link", "set", "lo", "up")
        self.ns_run(self.lab, "ip", "link", "add", "br0", "type", "bridge")
        self.ns_run(self.lab, "ip", "addr", "add", f"{self.bridge_ip}/24", "dev", "br0")
        self.ns_run(self.lab, "ip", "link", "set", "br0", "up")
        # this namespace <-> lab
        self._run("ip", "link", "add", f"h{t}", "type", "veth", "peer", "name", f"l{t}")
        self._run("ip", "link", "set", f"l{t}", "netns", self.lab)
        self._run("ip", "addr", "add", f"{self.host_ip}/30", "dev", f"h{t}")
        self._run("ip", "link", "set", f"h{t}", "up")
        self.ns_run(self.lab, "ip", "addr", "add", f"{self.lab_ip}/30", "dev", f"l{t}")
        self.ns_run(self.lab, "ip", "link", "set", f"l{t}", "up")
        for i, (name, ns) in enumerate(self.ns.items()):
            self._run("ip", "netns", "add", ns)
            self.ns_run(ns, "ip", "link", "set", "lo", "up")
            a, b = f"a{t}{i}", f"b{t}{i}"
            self.ns_run(self.lab, "ip", "link", "add", a, "type", "veth", "peer", "name", b)
            self.ns_run(self.lab, "ip", "link", "set", b, "netns", ns)
            self.ns_run(self.lab, "ip", "link", "set", a, "master", "br0")
            self.ns_run(self.lab, "ip", "link", "set", a, "up")
            self.ns_run(ns, "ip", "addr", "add", f"{self.node_ip[name]}/24", "dev", b)
            self.ns_run(ns, "ip", "link", "set", b, "up")
            # media to a viewer in this namespace (10.78.X.1) goes through lab
            self.ns_run(ns, "ip", "route", "add", "default", "via", self.bridge_ip)
        # this namespace reaches the nodes' own addresses (WHEP redirects, media) via lab
        self.ns_run(self.lab, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self._run("ip", "route", "add", f"10.77.{self.octet}.0/24", "via", self.lab_ip)

    def start_services(self, tmp: Path, *, redis_port: int, lb_port: int,
                       api_ports: dict[str, int]) -> list[subprocess.Popen[bytes]]:
        """Redis (``bridge_ip:redis_port``) and HAProxy (``lab_ip:lb_port``, in front of every
        node's ``node_ip:api_port``) in ``lab``; the caller kills them (:func:`lab_services`)."""
        with open(tmp / "lab.log", "ab") as log:
            redis = ns_popen(self.lab, [REDIS, "--port", str(redis_port), "--bind",
                                        self.bridge_ip, "--protected-mode", "no",  # private ns
                                        "--save", "", "--dir", str(tmp)], stdout=log, stderr=log)
            (tmp / "haproxy.cfg").write_text(haproxy_config(
                lb_port, api_ports, bind=self.lab_ip, hosts=self.node_ip))
            lb = ns_popen(self.lab, [HAPROXY, "-db", "-f", str(tmp / "haproxy.cfg")],
                          stdout=log, stderr=log)
        return [lb, redis]

    def node(self, name: str, tmp: Path, ffmpeg: str, *, api_port: int, redis_port: int,
             lease: int, webrtc: bool = False) -> NodeProcess:
        """Node ``name`` in its namespace: API (and WebRTC media) on its own address."""
        ip = self.node_ip[name]
        env = server_env(tmp / name, ffmpeg, CORE_WEBRTC_ENABLE=str(webrtc).lower())
        env = node_env(env, node_id=name, api_port=api_port, redis_port=redis_port, lease=lease)
        env.update({"CORE_API_ADDRESS": f"{ip}:{api_port}",
                    "CORE_CLUSTER_ADDRESS": f"http://{ip}:{api_port}",
                    "CORE_CLUSTER_REDIS_URL": f"redis://{self.bridge_ip}:{redis_port}/0",
                    "CORE_WEBRTC_BIND_ADDRESS": ip,
                    "CORE_API_ALLOW_PUBLIC_BIND": "true"})  # a private namespace
        return NodeProcess(name, env, tmp / f"{name}.log", netns=self.ns[name])

    def cut(self, name: str, port: int) -> None:
        ns = self.ns[name]
        self.ns_run(ns, "nft", "add", "table", "inet", "cut")
        self.ns_run(ns, "nft", "add", "chain", "inet", "cut", "out",
                    "{ type filter hook output priority 0 ; policy accept ; }")
        self.ns_run(ns, "nft", "add", "rule", "inet", "cut", "out", "ip", "daddr",
                    self.bridge_ip, "tcp", "dport", str(port), "drop")

    def heal(self, name: str) -> None:
        self.ns_run(self.ns[name], "nft", "delete", "table", "inet", "cut")

    def close(self) -> None:
        for ns in [*self.ns.values(), self.lab]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", f"h{self.tag}"], capture_output=True)


@contextmanager
def lab(names: list[str]) -> Iterator[Lab]:
    """A :class:`Lab` for ``names``, deleted on exit."""
    net = Lab(names)
    try:
        net.open()
        yield net
    finally:
        net.close()


@contextmanager
def lab_services(net: Lab, tmp: Path, *, redis_port: int, lb_port: int,
                 api_ports: dict[str, int]) -> Iterator[None]:
    """:meth:`Lab.start_services` for the context's duration."""
    procs = net.start_services(tmp, redis_port=redis_port, lb_port=lb_port, api_ports=api_ports)
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def totals(per_node: dict[str, Counter[str]]) -> Counter[str]:
    """FFmpegs per process id over all nodes of a census sample."""
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


def ns_popen(ns: str, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
    """``argv`` inside network namespace ``ns`` (``ip netns exec`` execs it: same pid)."""
    return subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kw)
