"""``python -m bench``: viewers, latency and cost of trio-core, Janus and aiortc, side by side.

``python -m bench`` runs the full steps (1, 10, 50, 100, 200, 300, 400, 500, 1000 viewers; a server's
steps stop once loss exceeds 1 %) against every available server and writes
``bench/RESULTS.md``; ``--quick`` is a smoke run (a few viewers, a few seconds).

``--workers 1,2`` runs trio-core (``fanout_workers``) and Janus (``event_loops``) once per
worker count; ``kernel-floor`` is the same viewers served by a minimal C loop that only
``sendmmsg`` ready bytes (no SRTP, no per-viewer Python; ``bench/trio_core_server.py``),
and the summary prints each server's µs/packet as a ratio to it.

Janus cannot use loopback ICE candidates (it skips loopback interfaces), so when Janus is
benchmarked the whole bench re-executes itself inside a private network namespace
(``unshare -n``: ``lo`` plus a veth pair 10.200.0.1/10.200.0.2 that exists only there);
nothing leaves the namespace. trio-core and aiortc use 127.0.0.1 either way.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import shutil
import sys
from functools import partial
from pathlib import Path

import trio

from bench import janus as janus_mod
from bench import runner
from bench.product import ProductResult, run_product
from bench.report import print_table, write_json, write_results
from bench.runner import Options, ServerResult, run_server
from trio_core.ffmpeg.binary import find_ffmpeg

FULL_STEPS = [1, 10, 50, 100, 200, 300, 400, 500, 1000]
QUICK_STEPS = [1, 3]
ALL_SERVERS = ["kernel-floor", "trio-core", "trio-core-py", "janus", "aiortc"]
#: the servers the --workers axis applies to
WORKER_AXIS = ("trio-core", "janus")

NETNS_SETUP = (
    "ip link set lo up && ip link add bva type veth peer name bvb && "
    "ip addr add 10.200.0.1/24 dev bva && ip addr add 10.200.0.2/24 dev bvb && "
    "ip link set bva up && ip link set bvb up"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: few viewers, seconds")
    ap.add_argument("--servers", default=",".join(ALL_SERVERS),
                    help="comma-separated subset of " + ",".join(ALL_SERVERS))  # fmt: skip
    ap.add_argument("--workers", default="1",
                    help="worker counts for trio-core (fanout_workers) and Janus (event_loops), "
                         "e.g. 1,2")  # fmt: skip
    ap.add_argument("--steps", default="", help="viewer counts, e.g. 1,10,50")
    ap.add_argument("--window", type=float, default=0.0, help="measurement seconds per step")
    ap.add_argument("--max-loss", type=float, default=1.0, help="stop a server above this loss %%")
    ap.add_argument("--no-pin", action="store_true", help="do not pin server/load generator")
    ap.add_argument("--no-netns", action="store_true",
                    help="never re-exec in a network namespace (Janus is then skipped)")  # fmt: skip
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--bitrate", default="2M")
    ap.add_argument("--probes", type=int, default=4, help="viewers that measure latency")
    ap.add_argument("--sample-every", type=int, default=32,
                    help="unprotect one RTP packet in N (others counted by header)")  # fmt: skip
    ap.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")),
                    help="where to write the report ('' to skip)")  # fmt: skip
    ap.add_argument("--json", default="", help="also write the raw figures as JSON here")
    ap.add_argument("--trio-core-cmd", default="",
                    help="trio-core harness command instead of 'python -m bench.trio_core_server' "
                         "(shell words; --port/--info/--sdp are appended)")  # fmt: skip
    ap.add_argument("--product-viewers", type=int, default=-1,
                    help="viewers for the product-path run (bench/product.py; 0 skips it; "
                         "default 20, --quick 3)")  # fmt: skip
    ap.add_argument("-q", "--quiet", action="store_true")
    return ap.parse_args(argv)


def maybe_reexec_in_netns(args: argparse.Namespace, servers: list[str]) -> None:
    if "janus" not in servers or args.no_netns or os.environ.get("BENCH_NETNS") == "1":
        return
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return
    cmd = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "bench", *sys.argv[1:]])
    env = dict(os.environ, BENCH_NETNS="1")
    os.execvpe("unshare", ["unshare", "-n", "sh", "-c", f"{NETNS_SETUP} && exec {cmd}"], env)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if argv is None:
        maybe_reexec_in_netns(args, servers)
    in_netns = os.environ.get("BENCH_NETNS") == "1"
    steps = [int(x) for x in args.steps.split(",") if x] or (
        QUICK_STEPS if args.quick else FULL_STEPS
    )
    opts = Options(
        servers=servers,
        steps=steps,
        window=args.window or (3.0 if args.quick else 10.0),
        settle=1.0 if args.quick else 2.0,
        warmup=2.5 if args.quick else 4.0,
        max_loss=args.max_loss,
        probes=args.probes,
        sample_every=args.sample_every,
        pin=not args.no_pin,
        ffmpeg=find_ffmpeg(os.environ.get("CORE_FFMPEG_BINARY", "")),
        size=args.size,
        bitrate=args.bitrate,
        trio_core_cmd=shlex.split(args.trio_core_cmd) if args.trio_core_cmd else None,
        verbose=not args.quiet,
    )
    workers = [int(x) for x in args.workers.split(",") if x.strip()] or [1]
    axis = len(workers) > 1
    runs = [(name, w) for name in servers for w in (workers if name in WORKER_AXIS else [1])]
    results: list[ServerResult] = []
    for name, count in runs:
        shown = runner.label(name, count, axis)
        if runner.ABORTED:
            results.append(ServerResult(shown, "?", error="bench interrupted"))
            continue
        if name == "janus" and (not in_netns or janus_mod.available() is None):
            why = (
                "janus is not installed (apt-get install -y janus)"
                if janus_mod.available() is None
                else "Janus never uses loopback ICE candidates; it needs the bench's network "
                "namespace (run as root with unshare and ip available, without --no-netns)"
            )
            results.append(ServerResult(shown, janus_mod.version(), error=why))
            continue
        if name in ("trio-core", "trio-core-py", "kernel-floor"):
            from bench.trio_core_server import pick_mode

            if pick_mode() is None:
                results.append(ServerResult(shown, "?", error=(
                    "rtp/forwarder.py (the Forwarder façade) is not in this tree yet")))
                continue
        results.append(trio.run(run_server, name, dataclasses.replace(opts, workers=count),
                                shown))
    product: ProductResult | None = None
    n_product = args.product_viewers if args.product_viewers >= 0 else (3 if args.quick else 20)
    if "trio-core" in servers and n_product > 0 and not runner.ABORTED:
        product = trio.run(partial(run_product, opts.ffmpeg, viewers=n_product,
                                   verbose=opts.verbose))
    print_table(results)
    if product is not None:
        print("trio-core product path (API + WHEP):", product.summary())
    if args.results:
        write_results(Path(args.results), results, opts, sys.argv if argv is None else argv,
                      product=product)
    if args.json:
        write_json(Path(args.json), results, product=product)
    ok = any(r.steps and r.steps[0].connected for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
