"""``python -m bench.core``: trio-core against datarhei Core, side by side, one table.

``python -m bench.core [--core-binary PATH] [--core-dir DIR] [--quick]
[--scenarios api,rtmp,hls,idle] [--runs 2]`` runs each scenario against trio-core and, given
``--core-binary``, against datarhei Core (built e.g. by ``../shared/tools/datarhei-core/build.sh``;
``--core-dir`` is the working directory Core reads ``mime.types`` from, by default
``<binary's dir>/src`` when that exists, else the binary's dir). Both get the same FFmpeg
(``--ffmpeg``; by default Debian's ``/usr/bin/ffmpeg`` when installed, else trio-core's own
lookup) and the same settings (:mod:`bench.sut`). Runs alternate per scenario (trio-core,
Core, trio-core, Core, ... ``--runs`` times each); the table shows the mean of a server's runs.

Scenarios (each run starts a fresh server; CPU is the server process's user+system from
``/proc/<pid>/stat``, not its FFmpeg children; "load gen" is this process's own CPU over the
same window, one core = 100 %):

* ``api``: 50 running processes (lavfi 64x64@5 -> null), ``GET /api/v3/process`` and
  ``/api/v3/process/{id}/state``, sequential on one keep-alive connection and with 8 clients
  (:mod:`bench.api`);
* ``rtmp``: one 6 Mbit/s H.264+AAC publisher (FFmpeg, ``-c copy`` of a file encoded once per
  bench) to N players (:func:`bench.rtmp.run_step_light`: byte-counting players in 2 child
  processes, epoll + ``recv_into``): server CPU per delivered MB, CPU of its busiest thread
  and threads over 10 % (``/proc/<pid>/task``), delivered MB/s, players lost;
* ``hls``: FFmpeg writes HLS into memfs (``-method PUT``), R live readers poll and fetch
  (:func:`bench.storage.hls_phase`): CPU per served MB, segment fetch p99, errors;
* ``idle``: RSS and CPU of the server with 0, 10 and 50 running processes.

``--quick``: trio-core-sized smoke values (3 processes, 5 players, 5 readers, short windows,
one run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean

import trio

from bench import api, rtmp, storage, sut
from bench.common import percentile, proc_sample
from trio_core.ffmpeg.binary import find_ffmpeg

Metrics = dict[str, float]


@dataclass
class Params:
    processes: int = 50
    requests: int = 1000
    api_seconds: float = 4.0
    clients: int = 8
    players: list[int] = field(default_factory=lambda: [50, 200])
    rtmp_window: float = 5.0
    rtmp_warmup: float = 2.0
    readers: list[int] = field(default_factory=lambda: [100, 200])
    hls_seconds: float = 8.0
    idle_counts: list[int] = field(default_factory=lambda: [0, 10, 50])
    idle_window: float = 3.0
    mbit: float = 6.0


QUICK = Params(processes=3, requests=50, api_seconds=1.0, clients=2, players=[5],
               rtmp_window=2.0, rtmp_warmup=1.0, readers=[5], hls_seconds=4.0,
               idle_counts=[0, 3], idle_window=1.0)


@dataclass
class Ctx:
    params: Params
    ffmpeg: str
    tmp: Path
    core_binary: str = ""
    core_dir: str = ""
    publish_file: Path | None = None
    notes: list[str] = field(default_factory=list)

    def spec(self, server: str, workdir: Path, *, rtmp: bool = False) -> sut.ServerSpec:
        if server == "trio-core":
            return sut.trio_core(workdir, self.ffmpeg, rtmp=rtmp, webrtc=False)
        return sut.datarhei_core(workdir, self.ffmpeg, self.core_binary, rtmp=rtmp,
                                 core_dir=self.core_dir)


def log(*args: object) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)


# --- scenarios: each returns {metric: value} and {metric: load generator CPU %} ----------------


def scenario_api(ctx: Ctx, server: str, workdir: Path) -> tuple[Metrics, Metrics]:
    p = ctx.params
    spec = ctx.spec(server, workdir)
    with sut.running(spec) as proc:
        results = api.measure(proc.pid, spec.port, p.processes, p.requests, p.api_seconds,
                              p.clients, verbose=False)
    out: Metrics = {}
    gen: Metrics = {}
    for r in results:
        n = max(1, r.requests)
        key = f"API {r.endpoint} ({p.processes} processes), {r.mode}"
        p50 = 1e3 * (percentile(r.latencies, 50) or 0.0)
        p99 = 1e3 * (percentile(r.latencies, 99) or 0.0)
        cpu = 1e3 * r.server_cpu / n
        if r.mode == "sequential":
            out[f"{key}: p50 / p99 ms"] = p50
            out[f"{key}: p99 ms"] = p99
        else:
            out[f"{key}: requests/s"] = r.requests / r.seconds
            out[f"{key}: p50 ms"] = p50
        out[f"{key}: server CPU ms/request"] = cpu
        for k in out:
            if k.startswith(key):
                gen[k] = 100 * r.client_cpu / r.seconds
        out[f"{key}: connection closes"] = r.closes
        if r.mode == "sequential":
            out[f"{key}: response body bytes"] = r.body_bytes
    out = {k.replace(": p50 / p99 ms", ": p50 ms"): v for k, v in out.items()}
    gen = {k.replace(": p50 / p99 ms", ": p50 ms"): v for k, v in gen.items()}
    return out, gen


def _publish_file(ctx: Ctx) -> Path:
    """A 10 s H.264 (6 Mbit/s, 720p25, a keyframe every 2 s) + AAC FLV, encoded once, so the
    publisher is a cheap ``-c copy`` for both servers."""
    if ctx.publish_file is None:
        out = ctx.tmp / "publish.flv"
        b = f"{ctx.params.mbit:g}M"
        seconds = "4" if ctx.params is QUICK else "10"
        subprocess.run([
            ctx.ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", seconds,
            "-vf", "noise=alls=20:allf=t", "-c:v", "libx264", "-preset", "ultrafast",
            "-g", "50", "-keyint_min", "50", "-sc_threshold", "0", "-bf", "0",
            "-b:v", b, "-maxrate", b, "-bufsize", b, "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "128k", "-f", "flv", str(out),
        ], check=True)  # fmt: skip
        ctx.publish_file = out
    return ctx.publish_file


def scenario_rtmp(ctx: Ctx, server: str, workdir: Path) -> tuple[Metrics, Metrics]:
    p = ctx.params
    source = _publish_file(ctx)
    spec = ctx.spec(server, workdir, rtmp=True)
    assert spec.rtmp_port is not None
    out: Metrics = {}
    gen: Metrics = {}
    with sut.running(spec) as proc, open(workdir / "publisher.log", "wb") as plog:
        publisher = subprocess.Popen(
            [ctx.ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
             "-i", str(source), "-c", "copy", "-f", "flv",
             f"rtmp://127.0.0.1:{spec.rtmp_port}/live/bench"],
            stdin=subprocess.DEVNULL, stdout=plog, stderr=plog)  # fmt: skip
        try:
            time.sleep(3.0)  # a whole GOP in the server before the first player
            if publisher.poll() is not None:
                raise RuntimeError(f"the publisher exited; see {workdir}/publisher.log")
            for n in p.players:
                # players in child processes (epoll + recv_into), per-thread server CPU
                r = rtmp.run_step_light(spec.rtmp_port, proc.pid, n, p.rtmp_window,
                                        p.rtmp_warmup, p.mbit)
                key = f"RTMP {p.mbit:g} Mbit/s, {n} players"
                values = {
                    f"{key}: server CPU ms per delivered MB": r.cpu_ms_per_mbyte or float("nan"),
                    f"{key}: server CPU %": r.server_cpu_percent,
                    f"{key}: busiest thread's share of server CPU %": r.busiest_share,
                    f"{key}: server threads with >= 20 % of its CPU": float(r.spread),
                    f"{key}: delivered MB/s": r.delivered_mbyte_s,
                    f"{key}: delivered / expected": r.delivered_mbyte_s / r.expected_mbyte_s,
                    f"{key}: players lost": float(r.lost),
                }
                ctx.notes.append(f"{server}, {key}: server threads CPU % {r.threads}; "
                                 f"load average {r.load_average:.1f}")
                out.update(values)
                gen.update(dict.fromkeys(values, r.loadgen_cpu_percent))
                time.sleep(1.0)
        finally:
            publisher.terminate()
            try:
                publisher.wait(10)
            except subprocess.TimeoutExpired:
                publisher.kill()
                publisher.wait()
    return out, gen


def scenario_hls(ctx: Ctx, server: str, workdir: Path) -> tuple[Metrics, Metrics]:
    p = ctx.params
    spec = ctx.spec(server, workdir)
    out: Metrics = {}
    gen: Metrics = {}
    with sut.running(spec) as proc:
        for n in p.readers:
            r = trio.run(storage.hls_phase, spec.base, spec.port, proc.pid, n, p.hls_seconds,
                         "1M")
            key = f"HLS from memfs, {n} readers"
            values = {
                f"{key}: server CPU ms per served MB": 1e3 * r["cpu_s_per_mb"],
                f"{key}: served MB/s": r["mb_s"],
                f"{key}: segment fetch p99 ms": r["segment_p99_ms"],
                f"{key}: reader errors": float(r["errors"]),
            }
            out.update(values)
            gen.update(dict.fromkeys(values, r["loadgen_cpu_pct"]))
            if r["errors"]:
                kinds = ", ".join(f"{k}: {v}" for k, v in sorted(r["error_kinds"].items()))
                ctx.notes.append(f"{server}, {key}: reader errors ({workdir.name}): {kinds}")
    return out, gen


def scenario_idle(ctx: Ctx, server: str, workdir: Path) -> tuple[Metrics, Metrics]:
    p = ctx.params
    spec = ctx.spec(server, workdir)
    out: Metrics = {}
    with sut.running(spec) as proc:
        created = 0
        rss0 = 0.0
        for count in p.idle_counts:
            if count > created:
                api.create_processes(spec.port, count - created, False, first=created)
                created = count
            time.sleep(1.0)
            a = proc_sample(proc.pid)
            time.sleep(p.idle_window)
            b = proc_sample(proc.pid)
            assert a is not None and b is not None, f"{server} exited"
            rss = b.rss / 1e6
            out[f"idle, {count} running processes: server RSS MB"] = rss
            out[f"idle, {count} running processes: server CPU %"] = \
                100 * (b.cpu - a.cpu) / p.idle_window
            if count == 0:
                rss0 = rss
            elif count == p.idle_counts[-1]:
                out[f"idle: RSS MB per running process (0 -> {count})"] = (rss - rss0) / count
    return out, {}


SCENARIOS: dict[str, Callable[[Ctx, str, Path], tuple[Metrics, Metrics]]] = {
    "api": scenario_api, "rtmp": scenario_rtmp, "hls": scenario_hls, "idle": scenario_idle,
}


# --- the table -------------------------------------------------------------------------------


def _fmt(v: float | None) -> str:
    if v is None or v != v:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def table(rows: dict[str, dict[str, list[float]]], gens: dict[str, dict[str, list[float]]],
          servers: list[str]) -> str:  # fmt: skip
    lines = []
    if len(servers) == 2:
        lines.append("| scenario | metric | trio-core | Core | trio-core / Core "
                     "| load gen CPU % (trio-core / Core) |")
        lines.append("|---|---|---|---|---|---|")
    else:
        lines.append("| scenario | metric | trio-core | load gen CPU % |")
        lines.append("|---|---|---|---|")
    for key, per in rows.items():
        scenario, _, metric = key.partition(": ")
        vals = [mean(per[s]) if per.get(s) else None for s in servers]
        g = [mean(gens[key][s]) if gens.get(key, {}).get(s) else None for s in servers]
        gtxt = " / ".join(_fmt(x) for x in g) if any(x is not None for x in g) else ""
        if len(servers) == 2:
            t, c = vals
            ratio = f"{t / c:.2f}×" if (t is not None and c) else "-"
            lines.append(f"| {scenario} | {metric} | {_fmt(t)} | {_fmt(c)} | {ratio} | {gtxt} |")
        else:
            lines.append(f"| {scenario} | {metric} | {_fmt(vals[0])} | {gtxt} |")
    return "\n".join(lines)


def default_ffmpeg() -> str:
    """Debian's FFmpeg (what issue 23's numbers used) when installed, else trio-core's."""
    return "/usr/bin/ffmpeg" if os.access("/usr/bin/ffmpeg", os.X_OK) else find_ffmpeg("")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.core", description=__doc__.split("\n")[0])
    ap.add_argument("--core-binary", default="", help="datarhei Core's binary (omit: trio-core only)")
    ap.add_argument("--core-dir", default="", help="Core's working directory (mime.types)")
    ap.add_argument("--ffmpeg", default="", help="the FFmpeg both servers use")
    ap.add_argument("--scenarios", default="api,rtmp,hls,idle")
    ap.add_argument("--runs", type=int, default=0, help="runs per server and scenario (2)")
    ap.add_argument("--players", default="", help="RTMP player counts (50,200)")
    ap.add_argument("--readers", default="", help="HLS reader counts (100,200)")
    ap.add_argument("--quick", action="store_true", help="smoke run (small counts, one run)")
    args = ap.parse_args(argv)
    params = QUICK if args.quick else Params()
    if args.players:
        params.players = [int(x) for x in args.players.split(",")]
    if args.readers:
        params.readers = [int(x) for x in args.readers.split(",")]
    runs = args.runs or (1 if args.quick else 2)
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in names if s not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenarios {unknown}; known: {list(SCENARIOS)}")
    servers = ["trio-core", "Core"] if args.core_binary else ["trio-core"]
    ffmpeg = str(Path(shutil.which(args.ffmpeg) or args.ffmpeg).resolve()) if args.ffmpeg \
        else default_ffmpeg()
    tmp = Path(tempfile.mkdtemp(prefix="bench-core-"))
    ctx = Ctx(params, ffmpeg, tmp, args.core_binary, args.core_dir)
    rows: dict[str, dict[str, list[float]]] = {}
    gens: dict[str, dict[str, list[float]]] = {}
    errors: list[str] = []
    t_start, load_start = time.monotonic(), os.getloadavg()[0]
    try:
        for name in names:
            for run in range(runs):
                for server in servers:
                    workdir = tmp / f"{name}-{server}-{run}"
                    log(f"{name}: {server} run {run + 1}/{runs}")
                    try:
                        values, gen = SCENARIOS[name](ctx, server, workdir)
                    except Exception as exc:  # a failing server is a result, not a crash
                        errors.append(f"{name} / {server} run {run + 1}: "
                                      f"{type(exc).__name__}: {exc}")
                        log(errors[-1])
                        continue
                    for k, v in values.items():
                        rows.setdefault(k, {}).setdefault(server, []).append(v)
                    for k, v in gen.items():
                        gens.setdefault(k, {}).setdefault(server, []).append(v)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    version = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True).stdout
    print(f"trio-core vs datarhei Core: {', '.join(names)}; {runs} alternating run(s) per "
          f"server; FFmpeg {ffmpeg} ({version.split(' Copyright')[0].removeprefix('ffmpeg version ')}); "
          f"{os.cpu_count()} CPUs; {time.monotonic() - t_start:.0f} s; load average (1 min) "
          f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end\n")
    print(table(rows, gens, servers))
    for note in ctx.notes:
        print(f"\nnote: {note}")
    for e in errors:
        print(f"\nerror: {e}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
