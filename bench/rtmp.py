"""``python -m bench.rtmp``: one 6 Mbit/s RTMP publisher to N RTMP players.

The RTMP server (:class:`trio_core.rtmp.server.RtmpServer`, as trio-core runs it) runs alone in
a child process so its CPU and memory can be read from /proc. This process publishes a
synthetic H264-like stream (25 fps, a keyframe every 2 s, ``--mbit`` Mbit/s of video plus a
128 kbit/s audio track; every video payload carries its send time) and runs the players: up
to ``--probes`` of them parse every message and measure the delay from publish to receipt,
the rest only count bytes (so the bench process itself stays cheap).

For each step (N players): connect and play, warm up, then over ``--window`` seconds measure
the server's CPU per delivered MB, the delivered rate, the probes' delay (p50/p95/max), the
server's RSS growth over the step (from just before its players connected) per player, and
players lost (disconnected by the server as too slow).
``--quick`` is a smoke run (steps 1,5; 2 s windows). Prints a table; ``--json`` writes results.
Numbers are for this machine, with the bench's players on the same cores.

:func:`run_step_light` (used by ``python -m bench.core``'s RTMP scenario, up to 600 players
of 6 Mbit/s ≈ 460 MB/s) keeps the load generator light: the players live in
:data:`LIGHT_PROCS` child processes (``python -m bench.rtmp --light-players N``), each with
:data:`LIGHT_THREADS` reader threads on an epoll set, ``recv_into`` one reused 1 MiB buffer
and only count bytes; the children report bytes, lost players and their own CPU on request
(stdin ``sample``), so the load generator's CPU is stated next to the server's, and the
server's CPU is read per thread from ``/proc/<pid>/task/*/stat``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

import trio

from bench.common import percentile, proc_sample, thread_cpu, thread_cpu_pct
from rtmp.chunk import MessageType
from rtmp.connection import ClientConnection, MediaReceived, StatusReceived, StreamCreated
from trio_core.rtmp.client import RtmpClient
from trio_core.rtmp.server import RtmpServer

FULL_STEPS = [1, 10, 50, 100, 200]
QUICK_STEPS = [1, 5]
FPS = 25
GOP = 50
AUDIO_RATE = 43  # AAC frames per second at 44.1 kHz
STAMP = struct.Struct(">d")


# --- the server child ------------------------------------------------------------------------


async def _serve() -> None:
    server = RtmpServer(host="127.0.0.1", port=0, max_connections=5000)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        print(f"PORT {server.ports[0]}", flush=True)
        stdin = trio.lowlevel.FdStream(os.dup(0))
        while await stdin.receive_some(1024):  # ends when the parent closes our stdin
            pass
        nursery.cancel_scope.cancel()


# --- publisher and players ---------------------------------------------------------------------


async def publish(port: int, mbit: float, stop: trio.Event,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    client = await RtmpClient.open("127.0.0.1", port, "live")
    await client.publish("bench")
    await client.send_media(MessageType.VIDEO, 0, b"\x17\x00\x01\x64\x00\x1f" + bytes(30))
    await client.send_media(MessageType.AUDIO, 0, b"\xaf\x00\x12\x10")
    task_status.started()
    frame_bytes = mbit * 1e6 / 8 / FPS
    key_bytes, inter_bytes = int(frame_bytes * 4), int(frame_bytes * (GOP - 4) / (GOP - 1))
    audio = b"\xaf\x01" + bytes(370)
    start = trio.current_time()
    frame = 0
    next_audio = 0
    try:
        while not stop.is_set():
            due = start + frame / FPS
            await trio.sleep_until(due)
            ts = int(frame * 1000 / FPS)
            key = frame % GOP == 0
            size = key_bytes if key else inter_bytes
            head = b"\x17\x01\x00\x00\x00" if key else b"\x27\x01\x00\x00\x00"
            body = head + STAMP.pack(time.time()) + bytes(max(0, size - 13))
            client.conn.send_media(client.stream_id, MessageType.VIDEO, ts, body)
            while next_audio * 1000 / AUDIO_RATE <= ts:
                client.conn.send_media(client.stream_id, MessageType.AUDIO,
                                       int(next_audio * 1000 / AUDIO_RATE), audio)
                next_audio += 1
            await client.flush()
            frame += 1
    finally:
        with trio.CancelScope(shield=True):
            await client.aclose()


@dataclass
class PlayerStats:
    bytes: int = 0
    delays: list[float] = field(default_factory=list)
    closed: bool = False
    measuring: bool = False


async def play(port: int, probe: bool, stats: PlayerStats,
               task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    client = await RtmpClient.open("127.0.0.1", port, "live", timeout=30)
    try:
        await client.play("bench", timeout=30)
        task_status.started()
        if probe:
            while True:
                try:
                    events = await client.receive_events()
                except EOFError:
                    break
                now = time.time()
                for ev in events:
                    if isinstance(ev, MediaReceived) and ev.type_id == MessageType.VIDEO \
                            and len(ev.payload) >= 13 and stats.measuring:
                        stats.delays.append(now - STAMP.unpack_from(ev.payload, 5)[0])
                stats.bytes = client.bytes_received
        else:
            stream = client.stream
            while True:
                data = await stream.receive_some(262144)
                if not data:
                    break
                stats.bytes += len(data)
        stats.closed = True
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        stats.closed = True
    finally:
        with trio.CancelScope(shield=True):
            await client.aclose()


@dataclass
class StepResult:
    players: int
    delivered_mbyte_s: float
    expected_mbyte_s: float
    server_cpu_percent: float
    cpu_ms_per_mbyte: float | None
    delay_p50_ms: float | None
    delay_p95_ms: float | None
    delay_max_ms: float | None
    rss_mb: float
    kb_per_player: float | None
    lost: int
    loadgen_cpu_percent: float = 0.0  # this process (the players), one core = 100


async def run_step(port: int, server_pid: int, n: int, probes: int, window: float,
                   warmup: float, mbit: float) -> StepResult:
    players = [PlayerStats() for _ in range(n)]
    idle = proc_sample(server_pid)
    assert idle is not None, "the server process is gone"
    baseline_rss = idle.rss
    async with trio.open_nursery() as nursery:
        limiter = trio.CapacityLimiter(20)

        async def start(i: int) -> None:
            async with limiter:
                await nursery.start(play, port, i < probes, players[i])

        async with trio.open_nursery() as starters:
            for i in range(n):
                starters.start_soon(start, i)
        await trio.sleep(warmup)
        for p in players:
            p.measuring = True
        before, me0 = proc_sample(server_pid), os.times()
        bytes_before = sum(p.bytes for p in players)
        t0 = trio.current_time()
        await trio.sleep(window)
        after, me1 = proc_sample(server_pid), os.times()
        elapsed = trio.current_time() - t0
        delivered = sum(p.bytes for p in players) - bytes_before
        nursery.cancel_scope.cancel()
    assert before is not None and after is not None, "the server process is gone"
    cpu = after.cpu - before.cpu
    delays = [d * 1000 for p in players for d in p.delays]
    mbytes = delivered / 1e6
    expected = n * (mbit * 1e6 / 8 + AUDIO_RATE * 386) / 1e6
    rss_growth = after.rss - baseline_rss
    return StepResult(
        players=n,
        delivered_mbyte_s=round(mbytes / elapsed, 2),
        expected_mbyte_s=round(expected, 2),
        server_cpu_percent=round(100 * cpu / elapsed, 1),
        cpu_ms_per_mbyte=round(1000 * cpu / mbytes, 2) if mbytes > 0 else None,
        delay_p50_ms=_round(percentile(delays, 50)),
        delay_p95_ms=_round(percentile(delays, 95)),
        delay_max_ms=_round(max(delays) if delays else None),
        rss_mb=round(after.rss / 1e6, 1),
        kb_per_player=round(rss_growth / n / 1024, 1) if n else None,
        lost=sum(1 for p in players if p.closed),
        loadgen_cpu_percent=round(100 * (me1.user + me1.system - me0.user - me0.system)
                                  / elapsed, 1),
    )


# --- light players: child processes, epoll + recv_into (the 600-player steps) ----------------

#: players per child process and reader threads per child (``run_step_light``)
LIGHT_PROCS = 2
LIGHT_THREADS = 2
RECV_BUFFER = 1 << 20


def _open_player(port: int, app: str = "live", name: str = "bench") -> socket.socket:
    """One RTMP player, blocking setup (handshake, connect, createStream, play); then
    non-blocking. Raises OSError/RuntimeError when the server refuses."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        conn = ClientConnection()
        sock.sendall(conn.start())
        conn.connect(app, f"rtmp://127.0.0.1:{port}/{app}")
        conn.create_stream()
        while True:
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("the server closed the connection during setup")
            for ev in conn.receive_data(data):
                if isinstance(ev, StreamCreated):
                    conn.play(ev.stream_id, name)
                elif isinstance(ev, StatusReceived):
                    if ev.level == "error":
                        raise RuntimeError(f"play refused: {ev.code}")
                    if ev.code == "NetStream.Play.Start":
                        out = conn.data_to_send()
                        if out:
                            sock.sendall(out)
                        sock.setblocking(False)
                        return sock
    except BaseException:
        sock.close()
        raise


class _Readers:
    """``threads`` reader threads, each an epoll set; a socket is read from the moment it is
    added (players opened later do not hold back the first ones), into one reused buffer
    per thread (as cheap as reading gets in Python); a socket the server closes counts as
    lost."""

    def __init__(self, threads: int) -> None:
        self.counts: list[int] = []
        self.lost: list[int] = []
        self.socks: list[socket.socket] = []
        self.stop = threading.Event()
        self.polls = [select.epoll() for _ in range(threads)]
        self.index: list[dict[int, int]] = [{} for _ in range(threads)]
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(threads)]
        for t in self.threads:
            t.start()

    def add(self, sock: socket.socket) -> None:
        i = len(self.socks)
        self.socks.append(sock)
        self.counts.append(0)
        self.lost.append(0)
        k = i % len(self.polls)
        self.index[k][sock.fileno()] = i
        self.polls[k].register(sock.fileno(), select.EPOLLIN)

    def _run(self, k: int) -> None:
        buf = bytearray(RECV_BUFFER)
        ep, index = self.polls[k], self.index[k]
        while not self.stop.is_set():
            for fd, _ in ep.poll(0.2):
                i = index[fd]
                try:
                    n = self.socks[i].recv_into(buf)
                except BlockingIOError:
                    continue
                except OSError:
                    n = 0
                if n:
                    self.counts[i] += n
                else:
                    self.lost[i] = 1
                    ep.unregister(fd)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()
        for ep in self.polls:
            ep.close()
        for s in self.socks:
            s.close()


def _players_child(port: int, n: int, threads: int) -> None:
    """``--light-players N``: N players in this process over ``threads`` reader threads.
    stdin commands: ``sample`` -> ``<bytes> <lost> <cpu seconds>``; EOF ends it."""
    readers = _Readers(threads)
    try:
        for _ in range(n):
            readers.add(_open_player(port))
        print("READY", flush=True)
        for line in sys.stdin:
            if line.strip() == "sample":
                t = os.times()
                print(sum(readers.counts), sum(readers.lost), t.user + t.system, flush=True)
    finally:
        readers.close()


@dataclass
class LightResult:
    players: int
    delivered_mbyte_s: float
    expected_mbyte_s: float
    server_cpu_percent: float
    cpu_ms_per_mbyte: float | None
    lost: int
    loadgen_cpu_percent: float  # the player processes (and this one), one core = 100
    threads: dict[str, float]  # the server's busiest threads: CPU % each
    load_average: float

    @property
    def busiest_share(self) -> float:
        """The busiest thread's share of the server's CPU, % (100: all on one thread)."""
        total = self.server_cpu_percent
        return round(100 * max(self.threads.values(), default=0.0) / total, 1) if total else 0.0

    @property
    def spread(self) -> int:
        """Server threads that carry at least 20 % of its CPU."""
        total = self.server_cpu_percent
        return sum(1 for v in self.threads.values() if total and v >= 0.2 * total)


def run_step_light(port: int, server_pid: int, n: int, window: float, warmup: float,
                   mbit: float, procs: int = LIGHT_PROCS, threads: int = LIGHT_THREADS
                   ) -> LightResult:
    """N byte-counting players in ``procs`` child processes (``threads`` epoll reader
    threads each, ``recv_into`` a 1 MiB buffer): the server's CPU (and per thread) per
    delivered MB over ``window`` s, the players' own CPU stated separately."""
    procs = max(1, min(procs, n))
    children = []
    try:
        for i in range(procs):
            share = n // procs + (1 if i < n % procs else 0)
            children.append(subprocess.Popen(
                [sys.executable, "-m", "bench.rtmp", "--light-players", str(share),
                 "--light-port", str(port), "--light-threads", str(threads)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline()
            if line.strip() != "READY":
                raise RuntimeError(f"a player process failed to start: {line!r}")
        time.sleep(warmup)

        def sample() -> tuple[int, int, float]:
            total = lost = 0
            cpu = 0.0
            for child in children:
                assert child.stdin is not None and child.stdout is not None
                child.stdin.write("sample\n")
                child.stdin.flush()
            for child in children:
                assert child.stdout is not None
                b, lo, c = child.stdout.readline().split()
                total += int(b)
                lost += int(lo)
                cpu += float(c)
            return total, lost, cpu

        b0, _, g0 = sample()
        s0, t0, me0, w0 = proc_sample(server_pid), thread_cpu(server_pid), os.times(), time.monotonic()
        time.sleep(window)
        b1, lost, g1 = sample()
        s1, t1, me1, w1 = proc_sample(server_pid), thread_cpu(server_pid), os.times(), time.monotonic()
    finally:
        for child in children:
            if child.stdin is not None:
                child.stdin.close()
        for child in children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    assert s0 is not None and s1 is not None, "the server process is gone"
    elapsed = w1 - w0
    cpu = s1.cpu - s0.cpu
    mbytes = (b1 - b0) / 1e6
    expected = n * (mbit * 1e6 / 8 + AUDIO_RATE * 386) / 1e6
    mine = me1.user + me1.system - me0.user - me0.system
    busiest = dict(list(thread_cpu_pct(t0, t1, elapsed).items())[:6])
    return LightResult(
        players=n, delivered_mbyte_s=round(mbytes / elapsed, 2), expected_mbyte_s=round(expected, 2),
        server_cpu_percent=round(100 * cpu / elapsed, 1),
        cpu_ms_per_mbyte=round(1000 * cpu / mbytes, 2) if mbytes > 0 else None, lost=lost,
        loadgen_cpu_percent=round(100 * (g1 - g0 + mine) / elapsed, 1), threads=busiest,
        load_average=os.getloadavg()[0])


def _round(v: float | None) -> float | None:
    return None if v is None or math.isnan(v) else round(v, 1)


def print_table(results: list[StepResult], mbit: float) -> None:
    print(f"\nRTMP fan-out: one {mbit:g} Mbit/s publisher to N players (server: trio-core RtmpServer, "
          "its own process)")
    head = ("players", "deliv MB/s", "expect MB/s", "srv CPU %", "CPU ms/MB", "delay p50",
            "p95", "max ms", "RSS MB", "KB/player", "lost")
    print(" | ".join(f"{h:>10}" for h in head))
    print("-+-".join("-" * 10 for _ in head))
    for r in results:
        row = (r.players, r.delivered_mbyte_s, r.expected_mbyte_s, r.server_cpu_percent,
               r.cpu_ms_per_mbyte, r.delay_p50_ms, r.delay_p95_ms, r.delay_max_ms, r.rss_mb,
               r.kb_per_player, r.lost)
        print(" | ".join(f"{'-' if v is None else v:>10}" for v in row))


async def bench(args: argparse.Namespace) -> list[StepResult]:
    steps = [int(s) for s in args.steps.split(",")] if args.steps else (
        QUICK_STEPS if args.quick else FULL_STEPS)
    window = args.window or (2.0 if args.quick else 10.0)
    warmup = 1.0 if args.quick else 3.0
    results: list[StepResult] = []
    argv = [sys.executable, "-m", "bench.rtmp", "--serve"]
    async with trio.open_nursery() as nursery:
        proc: trio.Process = await nursery.start(lambda task_status: trio.run_process(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, check=False,
            task_status=task_status))
        assert proc.stdout is not None and proc.stdin is not None
        line = b""
        with trio.fail_after(30):
            while not line.endswith(b"\n"):
                chunk = await proc.stdout.receive_some(1)
                if not chunk:
                    raise RuntimeError("the RTMP server child exited")
                line += chunk
        port = int(line.split()[1])
        stop = trio.Event()
        await nursery.start(publish, port, args.mbit, stop)
        await trio.sleep(2.5)  # a full GOP in the server's cache before the first baseline
        for n in steps:
            result = await run_step(port, proc.pid, n, args.probes, window, warmup, args.mbit)
            results.append(result)
            print(f"  {n} players: {result.delivered_mbyte_s} MB/s, "
                  f"CPU {result.server_cpu_percent} %, delay p50 {result.delay_p50_ms} ms",
                  file=sys.stderr, flush=True)
            await trio.sleep(1.0)
        stop.set()
        await proc.stdin.aclose()
        with trio.move_on_after(5):
            await proc.wait()
        nursery.cancel_scope.cancel()
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.rtmp", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 and 5 players, 2 s windows")
    ap.add_argument("--steps", default="", help="player counts, e.g. 1,10,50,100,200")
    ap.add_argument("--window", type=float, default=0.0, help="measurement seconds per step")
    ap.add_argument("--mbit", type=float, default=6.0, help="video bitrate of the publisher")
    ap.add_argument("--probes", type=int, default=10, help="players that measure delay")
    ap.add_argument("--json", default="", help="write the results to this JSON file")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--light-players", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--light-port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--light-threads", type=int, default=LIGHT_THREADS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.light_players:
        _players_child(args.light_port, args.light_players, args.light_threads)
        return
    if args.serve:
        logging.basicConfig(level=logging.WARNING)
        trio.run(_serve)
        return
    results = trio.run(bench, args)
    print_table(results, args.mbit)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in results], f, indent=1)


if __name__ == "__main__":
    main()

