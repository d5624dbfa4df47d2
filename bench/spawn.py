"""``python -m bench.spawn``: what starting a child costs the server's event loop.

``trio_core.ffmpeg.child.spawn`` sets the parent-death signal either through ``setpriv`` (the default
when available: CPython's ``vfork`` path, two extra execs in the child) or with a ``preexec_fn``
(the fallback: CPython must ``fork()`` with the GIL held, so the trio loop stalls while the
kernel copies the page tables, which grows with the server's RSS). This prints, for a few RSS
sizes, the time per spawn+reap of ``true`` and the longest gap seen by a 1 ms ticker task in the
same loop, for both, next to ``trio.run_process`` (vfork, no parent-death signal).

``--rss 50 200 500`` (MiB of touched ballast), ``--runs 20``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import trio

from trio_core.ffmpeg import child as child_module
from trio_core.ffmpeg.child import spawn


async def measure(method: str, runs: int) -> tuple[float, float, float]:
    """(median ms, max ms, worst loop stall ms) over ``runs`` spawns of ``true``."""
    worst = 0.0
    times: list[float] = []

    async def ticker() -> None:
        nonlocal worst
        last = time.perf_counter()
        while True:
            await trio.sleep(0.001)
            now = time.perf_counter()
            worst = max(worst, now - last)
            last = now

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await trio.sleep(0.01)
        for _ in range(runs):
            t0 = time.perf_counter()
            if method.startswith("child.spawn"):
                child_module.launcher = method.split()[1]
                child = await spawn(["true"])
                await child.wait()
            else:
                await trio.run_process(["true"])
            times.append(time.perf_counter() - t0)
        nursery.cancel_scope.cancel()
    return statistics.median(times) * 1000, max(times) * 1000, worst * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rss", type=int, nargs="+", default=[50, 200, 500],
                        help="MiB of ballast to touch before measuring")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    ballast = bytearray()
    print(f"{'method':20} {'ballast MiB':>11} {'median ms':>10} {'max ms':>8} {'loop stall ms':>14}")
    for mib in sorted(args.rss):
        ballast.extend(bytes(mib * 1024 * 1024 - len(ballast)))
        for i in range(0, len(ballast), 4096):
            ballast[i] = 1
        for method in ("child.spawn setpriv", "child.spawn preexec", "trio.run_process"):
            med, worst_time, stall = trio.run(measure, method, args.runs)
            print(f"{method:20} {mib:>11} {med:>10.1f} {worst_time:>8.1f} {stall:>14.1f}")


if __name__ == "__main__":
    main()
