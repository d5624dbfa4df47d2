"""Runs one server through the viewer steps and measures it.

Per server and worker count W (``--workers``: trio-core's ``fanout_workers``, Janus's
``event_loops``): start it pinned to the first W CPUs when pinning is on (the load
generator, tee and FFmpeg on the others; when W covers every CPU they share all of them, and
the server's own CPU time — ``/proc/<pid>/stat``, per thread ``/proc/<pid>/task/*/stat`` —
is what separates its cost from the load generator's), start the tee and the one FFmpeg
command (both inherit the bench's own CPU), wait for the stream, then for each step add
viewers up to N (at most ``connect_concurrency`` in flight), let them settle, and measure a
window: packets, loss, gaps, NACKs, server CPU (``/proc/<pid>/stat`` of the server process
only), server RSS, probe latency (tee send time -> kernel receive time at a probe viewer),
setup times of the viewers added in that step. A step whose loss exceeds ``max_loss`` % (or
where viewers fail to connect) is the last.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

from bench.common import (
    ffmpeg_rtp_argv,
    percentile,
    proc_sample,
    thread_cpu,
    thread_cpu_pct,
    udp_drops,
)
from bench.servers import AiortcServer, JanusServer, make_workdir
from bench.viewer import Viewer, ViewerPool


@dataclass
class Options:
    servers: list[str]
    steps: list[int]
    window: float = 10.0
    settle: float = 2.0
    warmup: float = 4.0
    max_loss: float = 1.0
    connect_concurrency: int = 16
    probes: int = 4
    sample_every: int = 32
    pin: bool = True
    ffmpeg: str = "ffmpeg"
    size: str = "1280x720"
    fps: int = 30
    bitrate: str = "2M"
    janus_host: str = "10.200.0.2"  # viewer address inside the bench's network namespace
    trio_core_cmd: list[str] | None = None
    verbose: bool = True
    workers: int = 1  # this run's worker threads / event loops (--workers axis)


@dataclass
class StepResult:
    server: str
    viewers: int
    connected: int
    failed: int
    fail_reasons: dict[str, int]
    window: float
    pkts_per_s: float
    mbit_per_s: float
    loss_pct: float
    gaps: int
    nacks: int
    recovered: int
    auth_fail: int
    unprotected: int
    server_cpu_pct: float
    cpu_us_per_pkt: float | None
    rss_kib_per_viewer: float | None
    loadgen_cpu_pct: float
    signalling_ms_p50: float | None
    signalling_ms_p95: float | None
    first_rtp_ms_p50: float | None
    first_keyframe_ms_p50: float | None
    first_keyframe_ms_p95: float | None
    latency_ms_p50: float | None = None
    latency_ms_p99: float | None = None
    latency_samples: int = 0
    jitter_ms_p99: float | None = None
    gen_drops: int = 0  # datagrams the kernel dropped at full viewer socket buffers
    fps_per_viewer: float = 0.0  # video frames (distinct RTP timestamps) per second per viewer
    server_sys_share: float | None = None  # kernel time / all CPU time of the server, %
    workers: int = 1  # the server's worker threads / event loops in this run
    #: CPU % over the window per server thread ("name:tid"), busiest first
    threads: dict[str, float] = field(default_factory=dict)
    t0: float = 0.0
    t1: float = 0.0


@dataclass
class ServerResult:
    name: str
    version: str
    steps: list[StepResult] = field(default_factory=list)
    error: str | None = None
    baseline_cpu_pct: float | None = None
    baseline_rss_mib: float | None = None
    tee_forwarded: int = 0
    notes: list[str] = field(default_factory=list)
    workers: int = 1
    kind: str = ""  # the server ("trio-core", "janus", "kernel-floor", ...) without the axis


ABORTED = False


async def _watch_signals(scope: trio.CancelScope) -> None:
    """SIGTERM/SIGINT: stop measuring, tear everything down cleanly, run no further server."""
    global ABORTED
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            ABORTED = True
            scope.cancel()
            return


def _describe(exc: BaseException) -> str:
    """The leaf exceptions of a (nested) exception group, as ``Type: message``."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def log(opts: Options, *args: Any) -> None:
    if opts.verbose:
        print(f"[{time.strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)


def make_server(name: str, workdir: Path, http: httpx.AsyncClient, pin: set[int] | None,
                opts: Options) -> Any:  # fmt: skip
    if name == "janus":
        return JanusServer(workdir, http, pin, loops=opts.workers)
    if name == "aiortc":
        return AiortcServer(workdir, http, pin)
    if name in ("trio-core", "trio-core-py", "kernel-floor"):
        from bench.trio_core_server import TrioCoreServer

        return TrioCoreServer(workdir, http, pin, opts.trio_core_cmd,
                              python_fanout=name == "trio-core-py", workers=opts.workers,
                              floor=name == "kernel-floor")
    raise ValueError(f"unknown server {name!r}")


def _snapshot(viewers: list[Viewer]) -> dict[tuple[int, int], tuple[int, int, int, int]]:
    return {
        (v.index, ssrc): (t.expected, t.received, t.bytes, t.frames if t.kind == "video" else 0)
        for v in viewers
        for ssrc, t in list(v.tracks.items())
    }


def _ms(x: float | None) -> float | None:
    return None if x is None else x * 1000


def label(name: str, workers: int, axis: bool) -> str:
    """The name a run shows in tables: the server, and its worker count on a workers axis."""
    return f"{name} ×{workers}" if axis and name in ("trio-core", "janus") else name


async def run_server(name: str, opts: Options, shown: str = "") -> ServerResult:
    workdir = make_workdir()
    cpus = sorted(os.sched_getaffinity(0))
    server_pin: set[int] | None = None
    if opts.pin and len(cpus) >= 2:
        if opts.workers < len(cpus):
            server_pin = set(cpus[:max(1, opts.workers)])
            os.sched_setaffinity(0, set(cpus[max(1, opts.workers):]))
        else:  # the server may use every CPU: the load generator shares them
            server_pin = set(cpus)
    host = opts.janus_host if name == "janus" else "127.0.0.1"
    result = ServerResult(shown or name, "?", workers=opts.workers, kind=name)
    limits = httpx.Limits(max_connections=opts.connect_concurrency + 8)
    tee: trio.Process | None = None
    tee_out = workdir / "tee.bin"
    pool = ViewerPool(host=host, probes=opts.probes, sample_every=opts.sample_every,
                      verify=name != "kernel-floor")
    try:
        async with httpx.AsyncClient(limits=limits) as http, trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, nursery.cancel_scope)
            server = make_server(name, workdir, http, server_pin, opts)
            result.version = server.version
            log(opts, f"{name}: starting ({server.version})")
            with trio.fail_after(60):
                vport, aport = await nursery.start(server.run)
            result.version = server.version
            tee = await trio.lowlevel.open_process(
                [sys.executable, "-m", "bench.tee", "--video", str(vport), "--audio", str(aport),
                 "--out", str(tee_out)],
                stdout=subprocess.PIPE,
                cwd=str(Path(__file__).resolve().parent.parent),

            )  # fmt: skip
            assert tee.stdout is not None
            line = b""
            with trio.fail_after(10):
                while not line.endswith(b"\n"):
                    chunk = await tee.stdout.receive_some(256)
                    if not chunk:
                        raise RuntimeError("tee exited")
                    line += chunk
            tports = json.loads(line)
            ff_log = open(workdir / "ffmpeg.log", "wb")  # noqa: SIM115
            argv = ffmpeg_rtp_argv(opts.ffmpeg, tports["video"], tports["audio"],
                                   str(workdir / "source.sdp"), size=opts.size,
                                   bitrate=opts.bitrate)  # fmt: skip
            await nursery.start(
                partial(trio.run_process, argv, stdin=subprocess.DEVNULL, stdout=ff_log,
                        stderr=ff_log, check=False)
            )  # fmt: skip
            with trio.fail_after(60):
                await server.ready()
            await trio.sleep(opts.warmup)
            await nursery.start(pool.run)
            base = proc_sample(server.pid)
            await trio.sleep(1.0)
            base2 = proc_sample(server.pid)
            if base and base2:
                result.baseline_cpu_pct = (base2.cpu - base.cpu) * 100
                result.baseline_rss_mib = base2.rss / 2**20
            log(opts, f"{name}: source running; idle server cpu {result.baseline_cpu_pct}%")
            for n in opts.steps:
                step = await _run_step(shown or name, server, pool, n, opts, base2)
                result.steps.append(step)
                log(opts, f"{name}: {n} viewers: connected {step.connected}, loss "
                          f"{step.loss_pct:.3f}%, {step.fps_per_viewer:.1f} fps, "
                          f"{step.pkts_per_s:.0f} pkt/s, server cpu "
                          f"{step.server_cpu_pct:.0f}%, {step.cpu_us_per_pkt} us/pkt, "
                          f"loadgen {step.loadgen_cpu_pct:.0f}%")  # fmt: skip
                if step.loadgen_cpu_pct > 85 or step.gen_drops:
                    result.notes.append(
                        f"{n} viewers: load generator at {step.loadgen_cpu_pct:.0f}% CPU, "
                        f"{step.gen_drops} datagrams dropped at viewer sockets — loss at this "
                        "step may be the generator's, not the server's"
                    )
                # frames: compared with the first step's delivered rate (the source's real
                # fps), minus 0.15 fps for counting at the window's edges
                ref_fps = result.steps[0].fps_per_viewer or opts.fps
                slow = step.fps_per_viewer < ref_fps * (1 - opts.max_loss / 100) - 0.15
                if step.loss_pct > opts.max_loss or step.connected < n or slow:
                    result.notes.append(
                        f"stopped after {n} viewers: loss {step.loss_pct:.2f}% "
                        f"(limit {opts.max_loss}%), {step.fps_per_viewer:.1f} of {opts.fps} fps "
                        f"delivered per viewer, {step.failed} failed to connect"
                        + (f" ({step.fail_reasons})" if step.fail_reasons else "")
                    )
                    break
            with trio.move_on_after(10):
                async with trio.open_nursery() as dn:
                    for v in pool.viewers:
                        dn.start_soon(server.disconnect, v)
            nursery.cancel_scope.cancel()
    except Exception as exc:  # a broken server is a result, not a crash of the bench
        result.error = _describe(exc)
        log(opts, f"{name}: error {result.error}")
    finally:
        if tee is not None:
            with trio.CancelScope(shield=True):
                if tee.returncode is None:
                    tee.terminate()
                with trio.move_on_after(10):
                    await tee.wait()
                if tee.returncode is None:
                    tee.kill()
                    await tee.wait()
        if server_pin is not None:
            os.sched_setaffinity(0, set(cpus))
    _join_latency(result, pool, tee_out)
    return result


async def _connect_one(server: Any, pool: ViewerPool, sem: trio.Semaphore,
                       fails: collections.Counter[str]) -> None:  # fmt: skip
    async with sem:
        if sum(fails.values()) >= 10:  # the server is refusing or broken: stop trying
            fails["skipped after 10 failures"] += 1
            return
        v = pool.new_viewer()
        try:
            await server.connect(v)
        except Exception as exc:
            v.failed = f"signalling: {type(exc).__name__}: {str(exc)[:80]}"
            fails[v.failed] += 1
            pool.close_viewer(v)
            return
        if not await pool.establish(v):
            fails[v.failed or "?"] += 1


async def _run_step(name: str, server: Any, pool: ViewerPool, n: int, opts: Options,
                    base: Any) -> StepResult:  # fmt: skip
    first_new = len(pool.viewers)
    fails: collections.Counter[str] = collections.Counter()
    sem = trio.Semaphore(opts.connect_concurrency)
    async with trio.open_nursery() as cn:
        for _ in range(n - len([v for v in pool.viewers if v.srtp is not None])):
            cn.start_soon(_connect_one, server, pool, sem, fails)
    new = pool.viewers[first_new:]
    live = [v for v in pool.viewers if v.srtp is not None and not v.closed]
    await trio.sleep(opts.settle)
    me0, s0 = proc_sample(os.getpid()), proc_sample(server.pid)
    th0 = thread_cpu(server.pid)
    snap0 = _snapshot(live)
    inodes = {os.fstat(v.sock.fileno()).st_ino for v in live}
    drops0 = udp_drops(inodes)
    t0 = time.time()
    await trio.sleep(opts.window)
    t1 = time.time()
    me1, s1 = proc_sample(os.getpid()), proc_sample(server.pid)
    th1 = thread_cpu(server.pid)
    snap1 = _snapshot(live)
    gen_drops = udp_drops(inodes) - drops0
    dexp = drec = 0
    nbytes = 0
    frames = 0
    for key, (e1, r1, b1, f1) in snap1.items():
        e0, r0, b0, f0 = snap0.get(key, (e1, r1, b1, f1))
        dexp += e1 - e0
        drec += r1 - r0
        nbytes += b1 - b0
        frames += f1 - f0
    window = t1 - t0
    lost = max(0, dexp - drec)
    cpu = (s1.cpu - s0.cpu) if (s0 and s1) else 0.0
    pkts = dexp if dexp > 0 else drec
    sig = [v.timing.signalled - v.timing.start for v in new if v.timing.signalled]
    frtp = [v.timing.first_rtp - v.timing.start for v in new if v.timing.first_rtp]
    fkf = [v.timing.first_keyframe - v.timing.start for v in new if v.timing.first_keyframe]
    jit: list[float] = []
    for v in live:
        if v.probe:
            for t in v.tracks.values():
                if t.kind == "video" and t.transit:
                    jit.extend(x - t.min_transit for x in t.transit[-int(window * 30):])
    rss_per = None
    if s1 and base and live:
        rss_per = (s1.rss - base.rss) / 1024 / len(live)
    return StepResult(
        server=name,
        viewers=n,
        connected=len(live),
        failed=sum(fails.values()),
        fail_reasons=dict(fails.most_common(3)),
        window=window,
        pkts_per_s=drec / window,
        mbit_per_s=nbytes * 8 / window / 1e6,
        loss_pct=100.0 * lost / dexp if dexp else (100.0 if live else 0.0),
        gaps=sum(t.gaps for v in live for t in v.tracks.values()),
        nacks=sum(t.nack_sent for v in live for t in v.tracks.values()),
        recovered=sum(t.recovered for v in live for t in v.tracks.values()),
        auth_fail=sum(v.auth_fail for v in live),
        unprotected=sum(v.unprotected for v in live),
        server_cpu_pct=100.0 * cpu / window,
        server_sys_share=100.0 * (s1.sys_cpu - s0.sys_cpu) / cpu if (s0 and s1 and cpu) else None,
        cpu_us_per_pkt=(1e6 * cpu / pkts) if pkts else None,
        rss_kib_per_viewer=rss_per,
        loadgen_cpu_pct=100.0 * (me1.cpu - me0.cpu) / window if (me0 and me1) else 0.0,
        signalling_ms_p50=_ms(percentile(sig, 50)),
        signalling_ms_p95=_ms(percentile(sig, 95)),
        first_rtp_ms_p50=_ms(percentile(frtp, 50)),
        first_keyframe_ms_p50=_ms(percentile(fkf, 50)),
        first_keyframe_ms_p95=_ms(percentile(fkf, 95)),
        jitter_ms_p99=_ms(percentile(jit, 99)),
        gen_drops=gen_drops,
        fps_per_viewer=frames / window / len(live) if live else 0.0,
        workers=opts.workers,
        threads=thread_cpu_pct(th0, th1, window),
        t0=t0,
        t1=t1,
    )


def _join_latency(result: ServerResult, pool: ViewerPool, tee_out: Path) -> None:
    """Forwarding latency: tee send time -> kernel receive time at a probe viewer, matched by
    payload content (keys seen more than once at the tee are ambiguous and dropped)."""
    try:
        raw = tee_out.read_bytes()
    except OSError:
        result.notes.append("no tee records: forwarding latency not measured")
        return
    sent: dict[int, float] = {}
    dup: set[int] = set()
    for key, t in struct.iter_unpack("<Qd", raw):
        if key in sent:
            dup.add(key)
        else:
            sent[key] = t
    result.tee_forwarded = len(raw) // 16
    samples: list[tuple[float, float]] = []
    for v in pool.viewers:
        if not v.probe:
            continue
        for key, arrival in v.latency_samples:
            if key in dup:
                continue
            t = sent.get(key)
            if t is not None and -0.001 < arrival - t < 5:
                samples.append((arrival, arrival - t))
    for step in result.steps:
        lat = [d for a, d in samples if step.t0 <= a <= step.t1]
        step.latency_samples = len(lat)
        step.latency_ms_p50 = _ms(percentile(lat, 50))
        step.latency_ms_p99 = _ms(percentile(lat, 99))
