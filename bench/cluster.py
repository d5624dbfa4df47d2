"""The cluster on Redis (issue 20): failover time and Redis load.

``python -m bench.cluster [--kills 20] [--lease 3] [--processes 30] [--idle 1000]
[--window 10] [--quick]`` starts Debian's ``redis-server`` and three trio-core nodes
(``python -m trio_core`` child processes on loopback ports, ``cluster.enable``), creates
``processes`` cheap running FFmpegs (``anullsrc`` -> ``-f null``) over the API and then:

* **failover**: ``kills`` times, ``kill -9`` of the node running the most processes, and
  the time until every process has exactly one FFmpeg again on the survivors (a /proc
  census of the nodes' FFmpeg children every 50 ms; it also counts any moment at which a
  process had two FFmpegs); the node is restarted and the cluster settles before the next
  kill. Prints p50/max against the target lease + 5 s.
* **Redis load**: ``INFO commandstats`` over ``window`` seconds of steady state, with the
  running processes and then with ``idle`` more processes (``autostart: false``: leased and
  placed like the others, no FFmpeg) — commands per second for the whole cluster and per
  process per second.

The machine may be shared (other work loads it): failover times include the scheduler's
delays. Everything started is stopped before it returns.

``--relay VIEWERS`` measures only the edge relay instead (:mod:`bench.cluster_relay`: CPU per
viewer-packet on an edge vs the origin, the origin's cost of one edge vs one viewer).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import percentile
from trio_core.ffmpeg.binary import find_ffmpeg

ROOT = Path(__file__).resolve().parents[1]
TAG = "benchcluster-"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=20) as resp:
        return json.loads(resp.read() or b"null")


def process_json(pid: str, autostart: bool = True) -> dict[str, Any]:
    return {"id": pid, "autostart": autostart, "reconnect": True, "reconnect_delay_seconds": 1,
            "options": ["-loglevel", "error"],
            "input": [{"id": "in", "address": "anullsrc=r=8000:cl=mono",
                       "options": ["-re", "-f", "lavfi"]}],
            "output": [{"id": "out", "address": "-",
                        "options": ["-metadata", f"title={TAG}{pid}", "-f", "null"]}]}


def census(pids: list[int]) -> Counter[str]:
    """Process id -> FFmpegs, over the children of ``pids``."""
    wanted = set(pids)
    found: Counter[str] = Counter()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
            if int(stat[stat.rindex(b")") + 2:].split()[1]) not in wanted:
                continue
            args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        for arg in args:
            if arg.startswith(f"title={TAG}".encode()):
                found[arg.decode()[len("title=") + len(TAG):]] += 1
    return found


class Node:
    def __init__(self, name: str, env: dict[str, str], log: Path) -> None:
        self.name, self.env, self.log = name, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = int(env["CORE_API_ADDRESS"].rsplit(":", 1)[1])

    def start(self) -> None:
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "trio_core"], env=self.env,
                                         cwd=str(ROOT), stdout=subprocess.PIPE, stderr=err)

    def wait_listening(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            if re.search(rb"trio-core listening on", line):
                return
        raise RuntimeError(f"{self.name} did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


def commandstats(port: int) -> dict[str, int]:
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "commandstats"],
                         capture_output=True, text=True, check=True).stdout
    calls = {}
    for line in out.splitlines():
        if m := re.match(r"cmdstat_([^:]+):calls=(\d+)", line):
            calls[m[1]] = int(m[2])
    return calls


def wait_all(nodes: list[Node], ids: set[str], timeout: float, exclude: Node | None = None,
             dup: list[int] | None = None) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        pids = [n.proc.pid for n in nodes if n.proc is not None and n is not exclude
                and n.proc.poll() is None]
        counts = census(pids)
        if dup is not None and any(v > 1 for v in counts.values()):
            dup[0] += 1
        if set(counts) >= ids and all(counts[i] == 1 for i in ids):
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--lease", type=int, default=3)
    ap.add_argument("--processes", type=int, default=30)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--relay", type=int, default=0, metavar="VIEWERS",
                    help="only the edge relay's cost with this many viewers "
                         "(bench/cluster_relay.py)")
    ap.add_argument("--seconds", type=float, default=10.0, help="per relay phase")
    ap.add_argument("--size", default="640x360", help="relay: the process's video size")
    args = ap.parse_args()
    if args.relay:
        import trio

        from bench import cluster_relay
        ffmpeg = find_ffmpeg(os.environ.get("CORE_FFMPEG_BINARY", ""))
        phases = trio.run(cluster_relay.run, ffmpeg, args.relay, args.seconds, args.size)
        print()
        print(f"edge relay, 2 nodes, {args.relay} viewers, {args.seconds:g} s per phase, "
              f"video {args.size}")
        print(cluster_relay.table(phases, args.seconds))
        print(f"\n(machine may be shared; command: python -m bench.cluster --relay {args.relay} "
              f"--seconds {args.seconds:g} --size {args.size})")
        return
    if args.quick:
        args.kills, args.processes, args.idle, args.window = 2, 6, 50, 3.0
    ffmpeg = find_ffmpeg(os.environ.get("CORE_FFMPEG_BINARY", ""))
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    rport = free_port()
    redis = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(rport),
                              "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nodes: list[Node] = []
    try:
        for name in ("n1", "n2", "n3"):
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("CORE_")}
            (tmp / name / "tmp").mkdir(parents=True)
            env.update({
                "CORE_API_ADDRESS": f"127.0.0.1:{port}", "CORE_DB_DIR": str(tmp / name / "db"),
                "CORE_STORAGE_DISK_DIR": str(tmp / name / "data"), "CORE_FFMPEG_BINARY": ffmpeg,
                "CORE_DEMO_ENABLE": "false", "CORE_WEBRTC_ENABLE": "false",
                "CORE_LOG_LEVEL": "warning", "TMPDIR": str(tmp / name / "tmp"),
                "PYTHONPATH": str(ROOT), "CORE_CLUSTER_ENABLE": "true",
                "CORE_CLUSTER_REDIS_URL": f"redis://127.0.0.1:{rport}/0",
                "CORE_CLUSTER_NODE_ID": name, "CORE_CLUSTER_ADDRESS": f"http://127.0.0.1:{port}",
                "CORE_CLUSTER_LEASE_SECONDS": str(args.lease),
                "CORE_CLUSTER_MAX_CPU_USAGE": "0", "CORE_CLUSTER_MAX_MEMORY_USAGE": "0"})
            nodes.append(Node(name, env, tmp / f"{name}.log"))
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_listening()
        base = f"http://127.0.0.1:{nodes[0].port}"
        ids = {f"p{i:04d}" for i in range(args.processes)}
        for pid in sorted(ids):
            http("POST", base + "/api/v3/process", process_json(pid))
        if wait_all(nodes, ids, 60) is None:
            raise RuntimeError("the processes did not all start")

        times: list[float] = []
        duplicates = [0]
        for k in range(args.kills):
            counts = {n.name: len(census([n.proc.pid])) for n in nodes if n.proc is not None}
            victim = max(nodes, key=lambda n: counts.get(n.name, 0))
            victim.kill()
            took = wait_all(nodes, ids, args.lease + 30, exclude=victim, dup=duplicates)
            times.append(took if took is not None else float("inf"))
            print(f"kill {k + 1}/{args.kills}: {victim.name} ({counts[victim.name]} processes) "
                  f"-> all running again after {took:.2f} s" if took is not None
                  else f"kill {k + 1}: not recovered", flush=True)
            victim.start()
            victim.wait_listening()
            # settle: the victim rejoined and the rebalancing is over (no node above its
            # share, every process running once)
            share = -(-12 * len(ids) // (10 * len(nodes)))  # ceil(1.2 * n / nodes)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                per = [len(census([n.proc.pid])) for n in nodes if n.proc is not None]
                if max(per) <= share and wait_all(nodes, ids, 5, dup=duplicates) is not None:
                    break
                time.sleep(0.2)

        before = commandstats(rport)
        time.sleep(args.window)
        after = commandstats(rport)
        running_rate = {k: (after.get(k, 0) - before.get(k, 0)) / args.window for k in after}
        running_rate = {k: v for k, v in running_rate.items() if v > 0 and k != "info"}
        for i in range(args.idle):
            http("POST", base + "/api/v3/process", process_json(f"idle{i:05d}", autostart=False))
        time.sleep(args.lease * 2)
        before = commandstats(rport)
        time.sleep(args.window)
        after = commandstats(rport)
        idle_rate = {k: (after.get(k, 0) - before.get(k, 0)) / args.window for k in after}
        idle_rate = {k: v for k, v in idle_rate.items() if v > 0 and k != "info"}

        p50, worst = percentile(times, 50), max(times) if times else None
        print()
        print(f"failover (kill -9 -> every process running once elsewhere), lease {args.lease} s, "
              f"{args.processes} processes, 3 nodes, {len(times)} kills")
        print("| p50 s | max s | target (lease + 5) s | samples with a process twice |")
        print("| ---: | ---: | ---: | ---: |")
        print(f"| {p50:.2f} | {worst:.2f} | {args.lease + 5} | {duplicates[0]} |")
        print()
        print("Redis commands per second (INFO commandstats; whole cluster, 3 nodes)")
        print("(commands inside the renewal script, GET + PEXPIRE per lease, are counted too;"
              " `client` = the commands the nodes send)")
        print("| processes | all commands/s | per process per s | client commands/s | by command |")
        print("| ---: | ---: | ---: | ---: | --- |")
        for count, rate in ((args.processes, running_rate),
                            (args.processes + args.idle, idle_rate)):
            total = sum(rate.values())
            client = total - rate.get("get", 0) - rate.get("pexpire", 0)
            top = ", ".join(f"{k} {v:.1f}" for k, v in sorted(rate.items(), key=lambda kv: -kv[1])[:6])
            print(f"| {count} | {total:.1f} | {total / count:.4f} | {client:.1f} | {top} |")
        print()
        print(f"(machine may be shared; command: python -m bench.cluster --kills {args.kills} "
              f"--lease {args.lease} --processes {args.processes} --idle {args.idle})")
    finally:
        for node in nodes:
            node.stop()
        redis.kill()
        redis.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
