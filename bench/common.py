"""Shared bench helpers: the FFmpeg source command, /proc sampling, statistics."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

VIDEO_PT = 96
AUDIO_PT = 111
VIDEO_SSRC = 0x1111
AUDIO_SSRC = 0x2222


def source_input_args(size: str = "1280x720", rate: int = 30) -> list[str]:
    """The synthetic input: testsrc2 plus temporal noise (so x264 really spends ~2 Mbit/s)
    and a sine tone, both paced in real time."""
    return [
        "-re", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
        "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
    ]  # fmt: skip


def video_encode_args(bitrate: str = "2M") -> list[str]:
    return [
        "-vf", "noise=alls=12:allf=t",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
        "-profile:v", "baseline", "-pix_fmt", "yuv420p", "-bf", "0",
        "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
        "-b:v", bitrate, "-maxrate", bitrate, "-bufsize", "1M",
    ]  # fmt: skip


AUDIO_ENCODE_ARGS = ["-c:a", "libopus", "-ar", "48000", "-ac", "2", "-b:a", "96k"]


def ffmpeg_rtp_argv(
    ffmpeg: str,
    video_port: int,
    audio_port: int,
    sdp_file: str,
    *,
    size: str = "1280x720",
    bitrate: str = "2M",
    host: str = "127.0.0.1",
) -> list[str]:
    """The one FFmpeg command that feeds every server (through the tee)."""
    return [
        ffmpeg, "-hide_banner", "-nostats", "-loglevel", "error",
        *source_input_args(size),
        "-map", "0:v:0", *video_encode_args(bitrate),
        "-payload_type", str(VIDEO_PT), "-ssrc", str(VIDEO_SSRC),
        "-f", "rtp", f"udp://{host}:{video_port}?pkt_size=1200",
        "-map", "1:a:0", *AUDIO_ENCODE_ARGS,
        "-payload_type", str(AUDIO_PT), "-ssrc", str(AUDIO_SSRC),
        "-f", "rtp", f"udp://{host}:{audio_port}?pkt_size=1200",
        "-sdp_file", sdp_file,
    ]  # fmt: skip


@dataclass
class ProcSample:
    cpu: float  # seconds (user + system) of the process itself (all threads, no children)
    rss: int  # bytes
    threads: int
    sys_cpu: float = 0.0  # the system (kernel) part of ``cpu``


def proc_sample(pid: int) -> ProcSample | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/statm") as f:
            rss_pages = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    utime, stime = int(fields[11]), int(fields[12])
    return ProcSample((utime + stime) / CLK_TCK, rss_pages * PAGE, int(fields[17]),
                      stime / CLK_TCK)


def free_udp_pair() -> int:
    """An even port P with P and P+1 free right now (for libavformat's SDP input, which binds
    the ports itself; a small race is acceptable on an otherwise idle loopback)."""
    for _ in range(200):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1] & ~1
        s.close()
        ok = True
        for p in (port, port + 1):
            t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                t.bind(("127.0.0.1", p))
            except OSError:
                ok = False
            finally:
                t.close()
        if ok and port > 1024:
            return port
    raise RuntimeError("no free UDP port pair")


def free_tcp_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, round(q / 100 * (len(v) - 1))))
    return v[k]


def udp_drops(inodes: set[int]) -> int:
    """Sum of the kernel's receive-buffer drop counters (/proc/net/udp) of these sockets."""
    total = 0
    try:
        with open("/proc/net/udp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if len(parts) >= 13 and int(parts[9]) in inodes:
                    total += int(parts[12])
    except (OSError, ValueError, StopIteration):
        pass
    return total


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of every thread of ``pid``, by ``"<name>:<tid>"``
    (``/proc/<pid>/task/*/stat``); threads that ended are missing."""
    out: dict[str, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                text = f.read()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[f"{name}:{tid}"] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def thread_cpu_pct(before: dict[str, float], after: dict[str, float],
                   window: float) -> dict[str, float]:
    """Per-thread CPU % over ``window`` seconds of every thread, busiest first."""
    pct = {k: 100.0 * (v - before.get(k, 0.0)) / window for k, v in after.items()}
    return {k: round(v, 1) for k, v in sorted(pct.items(), key=lambda kv: -kv[1])}
