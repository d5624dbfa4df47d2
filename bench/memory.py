"""The memory cost of the server: idle RSS and RSS per process.

``python -m bench.memory [--processes 10,50] [--quick]`` starts the real server
(``python -m trio_core`` as a child process on a free loopback port, auth off, no demo, a
temporary ``CORE_DB_DIR``/``CORE_STORAGE_DISK_DIR``) once per row, waits until the API
answers and a second more, and reads the server's ``VmRSS`` from ``/proc/<pid>/status``
(the server process only; FFmpeg children are not counted). Rows:

* **idle, default config** (``webrtc.enable`` is on by default) and **idle, WebRTC off**
  (``CORE_WEBRTC_ENABLE=false``): 0 processes (API auth off, as in ``bench.api``);
* **N stopped** / **N running** processes (``autostart`` false / true; running ones are
  ``-re -f lavfi -i testsrc=size=64x64:rate=5`` -> ``-f null -``, as in ``bench.api``): the RSS
  after creating them (and, for running ones, after every FFmpeg reported progress for a
  few seconds) and the delta per process against the same server's idle RSS.

``--quick`` is a smoke run (the two idle rows and 3 stopped/running processes). Everything
started is stopped before it returns.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.api import _request, create_processes
from bench.common import free_tcp_port
from trio_core.ffmpeg.binary import find_ffmpeg


def vm_rss(pid: int) -> int:
    """The resident set of ``pid`` in bytes (``VmRSS``)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass
class Row:
    scenario: str
    processes: int
    idle_rss: int  # bytes, the same server before creating processes
    rss: int  # bytes

    def line(self) -> str:
        per = ((self.rss - self.idle_rss) / self.processes / 1e6
               if self.processes else 0.0)
        per_s = f"{per:.3f}" if self.processes else "-"
        return (f"| {self.scenario} | {self.processes} | {self.idle_rss / 1e6:.1f} "
                f"| {self.rss / 1e6:.1f} | {per_s} |")


def measure(scenario: str, processes: int, *, running: bool, extra_env: dict[str, str],
            settle: float) -> Row:
    ffmpeg = find_ffmpeg()
    workdir = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    port = free_tcp_port()
    env = {
        **os.environ, **extra_env,
        "CORE_API_ADDRESS": f"127.0.0.1:{port}", "CORE_API_AUTH_ENABLE": "false",
        "CORE_DEMO_ENABLE": "false", "CORE_DB_DIR": str(workdir / "db"),
        "CORE_STORAGE_DISK_DIR": str(workdir / "data"), "CORE_FFMPEG_BINARY": ffmpeg,
    }
    log = open(workdir / "trio-core.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "trio_core"], env=env, cwd=str(workdir),
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _request(port, "GET", "/api")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the server did not come up; see " + str(workdir))
            time.sleep(0.05)
        time.sleep(settle)
        idle = vm_rss(proc.pid)
        create_processes(port, processes, stopped=not running)  # running: until all report
        if processes and running:
            time.sleep(2 * settle)  # a few progress ticks and log lines
        elif processes:
            time.sleep(settle)
        return Row(scenario, processes, idle, vm_rss(proc.pid))
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


HEADER = ("| scenario | processes | idle RSS MB | RSS MB | MB per process |\n"
          "|---|---|---|---|---|")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.memory",
                                description=__doc__.split("\n")[0])
    p.add_argument("--processes", default="10,50",
                   help="comma-separated process counts (each stopped and running)")
    p.add_argument("--quick", action="store_true", help="smoke run")
    args = p.parse_args(argv)
    counts = [3] if args.quick else [int(n) for n in args.processes.split(",") if n]
    settle = 0.5 if args.quick else 1.0
    rows: list[Row] = []

    def add(row: Row) -> None:
        rows.append(row)
        print(row.line(), file=sys.stderr, flush=True)

    add(measure("idle, default config", 0, running=False, extra_env={}, settle=settle))
    add(measure("idle, WebRTC off", 0, running=False,
                extra_env={"CORE_WEBRTC_ENABLE": "false"}, settle=settle))
    for n in counts:
        add(measure("stopped processes", n, running=False, extra_env={}, settle=settle))
        add(measure("running processes", n, running=True, extra_env={}, settle=settle))
    print("Server RSS (VmRSS of the server process, FFmpeg children not counted)\n")
    print(HEADER)
    for r in rows:
        print(r.line())


if __name__ == "__main__":
    main()
