"""Table on stdout and ``bench/RESULTS.md``."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.product import ProductResult
from bench.product import markdown as product_markdown
from bench.runner import Options, ServerResult, StepResult

COLUMNS = [
    ("server", "server", "{}"),
    ("viewers", "N", "{}"),
    ("connected", "conn", "{}"),
    ("loss_pct", "loss%", "{:.3f}"),
    ("fps_per_viewer", "fps", "{:.1f}"),
    ("pkts_per_s", "pkt/s", "{:.0f}"),
    ("mbit_per_s", "Mbit/s", "{:.1f}"),
    ("server_cpu_pct", "srv cpu%", "{:.0f}"),
    ("server_sys_share", "of it sys%", "{:.0f}"),
    ("cpu_us_per_pkt", "us/pkt", "{:.1f}"),
    ("rss_kib_per_viewer", "KiB/viewer", "{:.0f}"),
    ("signalling_ms_p50", "sig p50 ms", "{:.1f}"),
    ("first_rtp_ms_p50", "1st RTP ms", "{:.0f}"),
    ("first_keyframe_ms_p50", "1st key ms", "{:.0f}"),
    ("latency_ms_p50", "lat p50 ms", "{:.2f}"),
    ("latency_ms_p99", "lat p99 ms", "{:.2f}"),
    ("gaps", "gaps", "{}"),
    ("nacks", "nacks", "{}"),
    ("loadgen_cpu_pct", "gen cpu%", "{:.0f}"),
    ("gen_drops", "gen drops", "{}"),
    ("threads", "server threads cpu%", "threads"),
]


def _fmt(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    if fmt == "threads":  # the busiest server threads: "name pct" (tid dropped)
        busy = [(k, v) for k, v in value.items() if v >= 0.5][:5]
        return ", ".join(f"{k.rsplit(':', 1)[0]} {v:.0f}" for k, v in busy) or "-"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def rows(results: list[ServerResult]) -> list[list[str]]:
    out = []
    for r in results:
        if not r.steps:
            out.append([r.name, "-", "-", f"not run: {r.error}"] + [""] * (len(COLUMNS) - 4))
            continue
        for s in r.steps:
            out.append([_fmt(getattr(s, key), fmt) for key, _, fmt in COLUMNS])
    return out


def table_text(results: list[ServerResult]) -> str:
    head = [h for _, h, _ in COLUMNS]
    body = rows(results)
    widths = [max(len(head[i]), *(len(r[i]) for r in body if i < len(r) and len(r[3]) < 40))
              if body else len(head[i]) for i in range(len(head))]  # fmt: skip
    lines = [" | ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    for r in body:
        if r[3].startswith("not run"):
            lines.append(f"{r[0].rjust(widths[0])} | {r[3]}")
        else:
            lines.append(" | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(lines)


def print_table(results: list[ServerResult]) -> None:
    print("\nWebRTC viewers: trio-core vs Janus vs aiortc (one 2 Mbit/s H264 + Opus process)")
    print(table_text(results))
    print("\nSummary:")
    for line in summary_lines(results)[2:]:
        print("  " + line.strip("|").replace(" | ", " · ").strip())
    for r in results:
        for note in r.notes:
            print(f"  {r.name}: {note}")
        if r.error and r.steps:
            print(f"  {r.name}: error {r.error}")
    print(flush=True)


def _md_table(results: list[ServerResult]) -> str:
    head = [h for _, h, _ in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        if not r.steps:
            lines.append(f"| {r.name} | not run: {r.error} |" + " |" * (len(head) - 2))
            continue
        for s in r.steps:
            lines.append("| " + " | ".join(_fmt(getattr(s, k), f) for k, _, f in COLUMNS) + " |")
    return "\n".join(lines)


def _cmd(argv: list[str]) -> str:
    args = argv[1:] if argv and argv[0].endswith("py") else argv
    return " ".join(["python -m bench", *args])


def _machine() -> str:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()} · {os.cpu_count()} CPUs ({cpu}) · {mem:.0f} GiB · Linux {platform.release()}"


def _versions(opts: Options, results: list[ServerResult]) -> list[str]:
    import aioice
    import aiortc
    import OpenSSL
    import pylibsrtp
    import trio

    ff = "?"
    try:
        ff = subprocess.run([opts.ffmpeg, "-version"], capture_output=True, text=True,
                            timeout=10).stdout.split("\n")[0]  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        pass
    out = [f"Python {platform.python_version()}, trio {trio.__version__}, aiortc {aiortc.__version__}, "
           f"aioice {aioice.__version__}, pylibsrtp {pylibsrtp.__version__}, pyOpenSSL {OpenSSL.__version__}",
           f"FFmpeg: {ff}"]  # fmt: skip
    out += [f"{r.name}: {r.version}" for r in results]
    return out


def _best(r: ServerResult, pred: Any) -> StepResult | None:
    ok = [s for s in r.steps if pred(s)]
    return max(ok, key=lambda s: s.viewers) if ok else None


def _clean(s: StepResult, pct: float, ref_fps: float = 30.0) -> bool:
    """Loss below ``pct`` % by sequence numbers AND by delivered frames (against the first
    step's rate, minus 0.15 fps of window-edge counting), everyone connected."""
    return (s.loss_pct < pct if pct < 1 else s.loss_pct <= pct) and s.connected == s.viewers and (
        s.fps_per_viewer >= ref_fps * (1 - pct / 100) - 0.15
    )


def _ref(r: ServerResult) -> float:
    return r.steps[0].fps_per_viewer if r.steps and r.steps[0].fps_per_viewer else 30.0


def _targets(results: list[ServerResult], product: ProductResult | None = None) -> list[str]:
    tc = next((r for r in results if (r.kind or r.name) == "trio-core"), None)
    lines = ["| target | trio-core | status |", "|---|---|---|"]
    if tc is None or not tc.steps:
        why = tc.error if tc else "not benchmarked"
        lines.append(f"| all | not measured: {why} | — |")
        return lines
    good = _best(tc, lambda s: _clean(s, 0.1, _ref(tc)))
    lines.append(
        f"| ≥ 500 viewers of the 2 Mbit/s process with < 0.1 % loss | "
        f"{good.viewers if good else 0} viewers at < 0.1 % loss (largest step) | "
        f"{'met' if good and good.viewers >= 500 else 'not met'} |"
    )
    s100 = next((s for s in tc.steps if s.viewers == 100), None)
    if s100 and s100.latency_ms_p99 is not None:
        lines.append(f"| p99 forwarding latency < 2 ms at 100 viewers | {s100.latency_ms_p99:.2f} ms "
                     f"(p50 {s100.latency_ms_p50:.2f} ms, {s100.latency_samples} samples) | "
                     f"{'met' if s100.latency_ms_p99 < 2 else 'not met'} |")  # fmt: skip
    else:
        lines.append("| p99 forwarding latency < 2 ms at 100 viewers | not reached/measured | — |")
    sig = [s.signalling_ms_p50 for s in tc.steps if s.signalling_ms_p50 is not None]
    if sig:
        first = tc.steps[0].signalling_ms_p50
        lines.append(f"| POST → 201 < 20 ms p50 | {first:.1f} ms at {tc.steps[0].viewers} viewer(s); "
                     f"worst step p50 {max(sig):.1f} ms | {'met' if first is not None and first < 20 else 'not met'} |")  # fmt: skip
    if product is not None and product.post_ms:
        p50 = product.summary()["post_ms_p50"]
        lines.append(f"| POST → 201 < 20 ms p50, through the product API (`/api/v3/process/{{id}}/whep`) | "
                     f"{p50:.1f} ms p50 over {len(product.post_ms)} viewers joining one by one | "
                     f"{'met' if p50 < 20 else 'not met'} |")  # fmt: skip
    mem = [s for s in tc.steps if s.rss_kib_per_viewer is not None and s.viewers >= 10]
    if mem:
        m = max(mem, key=lambda s: s.viewers)
        lines.append(f"| < 50 KiB per viewer | {m.rss_kib_per_viewer:.0f} KiB (RSS delta / viewers at "
                     f"{m.viewers}) | {'met' if m.rss_kib_per_viewer < 50 else 'not met'} |")  # fmt: skip
    return lines


def _floor_at(results: list[ServerResult], viewers: int) -> float | None:
    """The kernel floor's µs/packet at ``viewers`` (or its nearest step below)."""
    floor = next((r for r in results if (r.kind or r.name) == "kernel-floor" and r.steps), None)
    if floor is None:
        return None
    steps = [s for s in floor.steps if s.viewers <= viewers and s.cpu_us_per_pkt]
    return steps[-1].cpu_us_per_pkt if steps else None


def _threads(step: StepResult | None) -> str:
    return _fmt(step.threads, "threads") if step is not None and step.threads else "-"


def summary_lines(results: list[ServerResult]) -> list[str]:
    """Per server: largest clean step, cost per packet there (and as a ratio to the kernel
    floor at that step), projected viewers per core, per-thread CPU, latency."""
    out = ["| server | workers | max viewers, loss < 0.1 % | max viewers, loss ≤ 1 % | server µs/pkt there | "
           "× kernel floor | ≈ viewers per CPU core at this bitrate | server threads cpu% there | "
           "p50 / p99 latency at that step | KiB per added viewer |",
           "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        if not r.steps:
            out.append(f"| {r.name} | {r.workers} | not run | | | | | | {r.error} | |")
            continue
        ref_fps = _ref(r)
        clean = _best(r, lambda s, f=ref_fps: _clean(s, 0.1, f))
        ok = _best(r, lambda s, f=ref_fps: _clean(s, 1.0, f))
        ref = clean or ok
        per_core = "-"
        if ref and ref.cpu_us_per_pkt and ref.viewers:
            pps_per_viewer = ref.pkts_per_s / max(ref.connected, 1)
            per_core = f"{1e6 / ref.cpu_us_per_pkt / pps_per_viewer:.0f}"
        lat = "-"
        if ref and ref.latency_ms_p50 is not None:
            lat = f"{ref.latency_ms_p50:.2f} / {ref.latency_ms_p99:.2f} ms"
        floor = _floor_at(results, ref.viewers) if ref else None
        ratio = "-"
        if floor and ref and ref.cpu_us_per_pkt and (r.kind or r.name) != "kernel-floor":
            ratio = f"{ref.cpu_us_per_pkt / floor:.2f}×"
        out.append(
            f"| {r.name} | {r.workers} | {clean.viewers if clean else 0} | {ok.viewers if ok else 0} | "
            f"{_fmt(ref.cpu_us_per_pkt if ref else None, '{:.1f}')} | {ratio} | {per_core} | "
            f"{_threads(ref)} | {lat} | {_marginal_kib(r)} |"
        )
    return out


def _marginal_kib(r: ServerResult) -> str:
    """Memory per *added* viewer: the RSS growth between the two largest steps with all
    viewers connected, per viewer added (the KiB/viewer column also spreads one-time costs,
    e.g. the DTLS stack loaded with the first viewer, over the viewers)."""
    steps = [s for s in r.steps if s.rss_kib_per_viewer is not None and s.connected == s.viewers]
    if len(steps) < 2:
        return "-"
    a, b = steps[-2], steps[-1]
    grown = b.rss_kib_per_viewer * b.viewers - a.rss_kib_per_viewer * a.viewers  # type: ignore[operator]
    return f"{grown / (b.viewers - a.viewers):.0f} ({a.viewers}→{b.viewers})"


def per_step_ratios(results: list[ServerResult]) -> list[str]:
    """µs/packet per step, and as a ratio to the kernel floor's at the same step."""
    steps = sorted({s.viewers for r in results for s in r.steps})
    shown = [r for r in results if r.steps]
    out = ["| N | " + " | ".join(r.name for r in shown) + " |", "|---|" + "---|" * len(shown)]
    for n in steps:
        cells = []
        for r in shown:
            s = next((x for x in r.steps if x.viewers == n), None)
            if s is None or not s.cpu_us_per_pkt:
                cells.append("-")
                continue
            floor = next((x.cpu_us_per_pkt for res in results
                          if (res.kind or res.name) == "kernel-floor"
                          for x in res.steps if x.viewers == n), None)
            ratio = f" ({s.cpu_us_per_pkt / floor:.2f}×)" if floor and r.kind != "kernel-floor" else ""
            cells.append(f"{s.cpu_us_per_pkt:.2f}{ratio}")
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    return out


NOTES = [
    "- **trio-core**: the viewer steps run `bench/trio_core_server.py`, a thin harness around "
    "`rtp.forwarder.Forwarder` (its Source ports fed straight by the tee, WHEP `POST /whep` → `add_peer`), so the "
    "latency column is exactly RTP into the Source → SRTP out. The product's HTTP layer is "
    "measured on its own in the product-path section above (`bench/product.py`: the real `trio-core` server, a "
    "process created over its API, viewers via `POST /api/v3/process/{id}/whep`). Its hot path is "
    "`rtp/_fanout.c` (header rewrite, libsrtp protect, one `sendmmsg` per 64 viewers); **trio-core-py** is the "
    "same harness with `RTP_FANOUT=python`, the pure-Python loop a machine without a C compiler gets.",
    "- **Janus** 1.1.2 (Debian package), streaming plugin, RTP mountpoint created over the HTTP API with `port: 0` "
    "(Janus binds its own ports; the tee feeds them). Janus never gathers loopback candidates (`src/ice.c` skips "
    "`IFF_LOOPBACK` interfaces; `ice_enforce_list = lo` does not help), so when Janus is in the run the whole bench "
    "re-executes inside a private network namespace (`unshare -n`) with a veth pair 10.200.0.1/10.200.0.2 that exists "
    "only there; Janus's viewers use those addresses, everything else stays on 127.0.0.1. Janus offers (it is the "
    "ICE-controlling full agent and sends its own connectivity checks); viewers answer `setup:active`. "
    "`event_loops` = number of CPUs Janus may use (static event loops): with Janus's default thread per "
    "PeerConnection it measured ~40 µs/packet here and lost 13 % at 100 viewers; with one loop 22 µs/packet, clean.",
    "- **aiortc** 1.16: `bench/aiortc_server.py`, `MediaPlayer(source SDP, decode=False)` (libavformat's RTP "
    "demuxer, H264/Opus stay encoded) + one `MediaRelay` subscription per viewer; every viewer's sender "
    "re-packetizes the encoded frames and encrypts them itself — aiortc cannot forward the source's RTP packets as "
    "they are. The latency column therefore includes frame reassembly in libavformat and re-packetization. When "
    "behind, it drops whole frames before numbering packets, which the `fps` column shows and `loss%` cannot.",
    "- **Load generator**: one process (trio for signalling/ICE/DTLS, one epoll data thread); it costs roughly "
    "7–10 µs per received packet here, i.e. it saturates near 100–140 k packets/s on its core. A step where it "
    "exceeded 85 % CPU or where the kernel dropped datagrams at its sockets is flagged in the notes above.",
    "- All on one 2-CPU VM shared with other engineers' test runs: absolute viewer counts move with that noise; "
    "µs per packet is the figure to compare. Example: Janus's 200-viewer step runs its core at 94–99 %; in three "
    "development runs (same code, same day) it gave 0.09 %, 47.8 % (a NACK storm: viewers NACK what is late, the "
    "retransmissions add load) and 0.00 % loss.",
]


def write_results(path: Path, results: list[ServerResult], opts: Options, argv: list[str],
                  product: ProductResult | None = None) -> None:
    md = [
        "# bench/ results — WebRTC viewers of one process: trio-core, Janus, aiortc",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by `{_cmd(argv)}`.",
        "",
        "## Machine and versions",
        "",
        f"- {_machine()}",
        *[f"- {v}" for v in _versions(opts, results)],
        f"- Pinning: {'server on CPU 0; load generator, tee and FFmpeg on the other CPU(s)' if opts.pin else 'off'}. "
        "The machine is shared with other work; compare per CPU-second (us/pkt), not absolute viewers.",
        "",
        "## Scenario",
        "",
        f"- One FFmpeg command feeds every server: lavfi `testsrc2` {opts.size} 30 fps + temporal noise, libx264 "
        f"ultrafast/zerolatency baseline, `-b:v {opts.bitrate} -maxrate {opts.bitrate} -bufsize 1M`, GOP 2 s, no B-frames; "
        "sine → libopus 96k; `-f rtp udp://…?pkt_size=1200`. It sends to a tee process, which forwards each "
        "datagram to the server's RTP port(s) and records its send time.",
        f"- Steps {opts.steps} viewers; each step adds viewers ({opts.connect_concurrency} in flight), "
        f"settles {opts.settle:g} s, measures {opts.window:g} s; a server stops after a step with loss > {opts.max_loss:g} % "
        "or failed connections.",
        "- Viewers (`bench/viewer.py`): one trio process, one UDP socket each, a data thread reading all sockets with "
        f"epoll; RTP counted from the cleartext header; 1 packet in {opts.sample_every} unprotected (plus every video "
        f"packet until the first keyframe) to verify SRTP; {opts.probes} probe viewers unprotect everything and use "
        "kernel receive timestamps. Consent checks every ~4 s, RR+SDES every second per viewer, generic NACK on "
        "sequence holes.",
        "",
        "Columns: `loss%` = lost / expected over the window (from sequence numbers); `pkt/s` packets received by all "
        "viewers; `srv cpu%` = server process CPU (user+sys, /proc/<pid>/stat, all threads, no children) / window; "
        "`of it sys%` = the kernel's share of that CPU time (on loopback a send also delivers the datagram into the "
        "receiving socket, so this is the floor no user-space work removes); "
        "`us/pkt` = server CPU µs per forwarded packet (includes its ingest); `KiB/viewer` = (server RSS − RSS with "
        "the source and no viewers) / viewers; `sig p50` = POST→201 (WHEP) or watch→offer (Janus); `1st RTP`/`1st key` "
        "= from the signalling request to the first RTP packet / first H264 keyframe; `lat` = tee send → probe "
        "kernel receive of the same payload (forwarding latency incl. two loopback hops); `gaps` = forward "
        "sequence jumps seen, `nacks` = sequence numbers NACKed; `gen cpu%` = load generator CPU; `gen drops` = "
        "datagrams the kernel dropped at full viewer socket buffers (/proc/net/udp) — non-zero means the load "
        "generator, not the server, lost them.",
        "",
        "## Summary",
        "",
        *summary_lines(results),
        "",
        "`≈ viewers per CPU core` = 1 s / (µs per packet × packets per second per viewer), from the largest clean "
        "step: what one fully used core would carry at that cost (the projection ignores contention). "
        "`× kernel floor` = that µs/packet divided by the kernel floor's at the same step (a minimal C loop "
        "`sendmmsg`-ing ready bytes to the same viewers: no SRTP, no per-viewer Python).",
        "",
        "Server CPU µs per forwarded packet at each step (× the kernel floor's at that step):",
        "",
        *per_step_ratios(results),
        "",
        "## Figures",
        "",
        _md_table(results),
        "",
    ]
    for r in results:
        extra = []
        if r.baseline_cpu_pct is not None:
            extra.append(f"idle with source: {r.baseline_cpu_pct:.0f}% CPU, RSS {r.baseline_rss_mib:.0f} MiB")
        extra += r.notes
        if r.error:
            extra.append(f"error: {r.error}")
        if extra:
            md.append(f"- **{r.name}**: " + "; ".join(extra))
    md += ["", "## Targets (trio-core column)", "", *_targets(results, product), ""]
    if product is not None:
        md += product_markdown(product)
    md += ["## How each server is run and what that means for the figures", "", *NOTES, ""]
    path.write_text("\n".join(md) + "\n")


def write_json(path: Path, results: list[ServerResult],
               product: ProductResult | None = None) -> None:
    import dataclasses
    import json

    rows: list[dict[str, Any]] = [dataclasses.asdict(r) for r in results]
    if product is not None:
        rows.append({"name": "trio-core-api", **product.summary()})
    path.write_text(json.dumps(rows, indent=1))
