"""``python -m bench.srt_fanout``: one SRT publisher to N SRT subscribers through trio-core.

The SRT server (:class:`trio_core.srt.server.SrtServer`, libsrt + the relay thread) runs in
this process; everything else is a child: one FFmpeg publisher replaying a pre-encoded
MPEG-TS file (H264 + AAC at ``--bitrate``, ``-c copy``, real time, looped) and N FFmpeg
subscribers (``-c copy -f null``, no decoding). For each step the table shows what came in,
what went out, this process's CPU (the relay thread plus libsrt's threads; the children are
not counted) per second and per delivered packet, its memory growth and how many
subscribers were dropped as too slow. Numbers from a shared machine are indicative only.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import trio

from trio_core.ffmpeg.binary import find_ffmpeg
from trio_core.srt.server import SrtServer


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def encode_sample(ffmpeg: str, path: Path, bitrate: str) -> None:
    """10 s of 1280x720 H264 (``bitrate``) + AAC in MPEG-TS, encoded once."""
    subprocess.run([
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-f", "lavfi",
        "-i", "sine=frequency=440:sample_rate=48000", "-t", "10",
        "-c:v", "libx264", "-preset", "veryfast", "-b:v", bitrate, "-maxrate", bitrate,
        "-bufsize", bitrate, "-g", "60", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "128k", "-f", "mpegts", str(path)], check=True)


async def measure(ffmpeg: str, sample: Path, subscribers: int, seconds: float
                  ) -> dict[str, float]:
    server = SrtServer(address="127.0.0.1:0")
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.run)
        base = f"srt://127.0.0.1:{port}?mode=caller&transtype=live&streamid=bench"
        procs: list[trio.Process] = []
        try:
            procs.append(await trio.lowlevel.open_process([
                ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
                "-stream_loop", "-1", "-i", str(sample), "-c", "copy", "-f", "mpegts",
                base + ",mode:publish"], stdin=subprocess.DEVNULL))
            with trio.fail_after(20):
                while "bench" not in server.channels()["publisher"]:
                    await trio.sleep(0.1)
            for _ in range(subscribers):
                procs.append(await trio.lowlevel.open_process([
                    ffmpeg, "-hide_banner", "-loglevel", "quiet", "-nostdin", "-i", base,
                    "-c", "copy", "-f", "null", "-"], stdin=subprocess.DEVNULL))
            with trio.fail_after(60):
                while len(server.channels()["subscriber"].get("bench", [])) < subscribers:
                    await trio.sleep(0.2)
            await trio.sleep(2.0)  # warm-up

            def totals() -> tuple[int, int, int]:
                ch = server.channels()
                pub = ch["publisher"].get("bench")
                conns = ch["connections"]
                recv = conns[str(pub)]["stats"]["recv_bytes"] if str(pub) in conns else 0
                sent = sum(c["stats"]["sent_bytes"] for k, c in conns.items() if k != str(pub))
                pkts = sum(c["stats"]["sent_pkt"] for k, c in conns.items() if k != str(pub))
                return recv, sent, pkts

            rss0, cpu0, t0 = _rss_kib(), _cpu_seconds(), time.monotonic()
            recv0, sent0, pkts0 = totals()
            await trio.sleep(seconds)
            recv1, sent1, pkts1 = totals()
            cpu1, t1, rss1 = _cpu_seconds(), time.monotonic(), _rss_kib()
            dropped = sum(1 for e in server.events if e.status == "DROP")
        finally:
            for proc in procs:
                proc.kill()
            for proc in procs:
                await proc.wait()
            nursery.cancel_scope.cancel()
    elapsed = t1 - t0
    delivered = max(pkts1 - pkts0, 1)
    return {
        "subscribers": subscribers,
        "in_mbit": (recv1 - recv0) * 8 / elapsed / 1e6,
        "out_mbit": (sent1 - sent0) * 8 / elapsed / 1e6,
        "cpu_pct": (cpu1 - cpu0) / elapsed * 100,
        "us_per_pkt": (cpu1 - cpu0) / delivered * 1e6,
        "rss_mib": (rss1 - rss0) / 1024,
        "dropped": dropped,
    }


async def main_async(args: argparse.Namespace) -> None:
    ffmpeg = find_ffmpeg("")
    with tempfile.TemporaryDirectory() as tmp:
        sample = Path(tmp) / "sample.ts"
        encode_sample(ffmpeg, sample, args.bitrate)
        print("| subscribers | in Mbit/s | out Mbit/s | CPU % (1 core) | CPU µs/packet out "
              "| RSS growth MiB | dropped |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for n in args.subscribers:
            r = await measure(ffmpeg, sample, n, args.seconds)
            print(f"| {n} | {r['in_mbit']:.2f} | {r['out_mbit']:.2f} | {r['cpu_pct']:.1f} "
                  f"| {r['us_per_pkt']:.1f} | {r['rss_mib']:.1f} | {r['dropped']:.0f} |",
                  flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", default="1,10,50",
                    type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--bitrate", default="6M")
    trio.run(main_async, ap.parse_args())


if __name__ == "__main__":
    main()
