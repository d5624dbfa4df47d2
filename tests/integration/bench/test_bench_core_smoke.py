"""Smoke test of ``python -m bench.core --quick`` against trio-core alone (no Core binary, no
Go): every scenario (API list/state, RTMP relay, HLS from memfs, idle) runs against the real
server with real FFmpeg and its rows reach the one table. No timing assertions (shared
machine)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _rows(stdout: str) -> dict[tuple[str, str], tuple[float, str]]:
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("scenario", "---"):
            value = float(cells[2].replace(",", "")) if cells[2] != "-" else float("nan")
            rows[(cells[0], cells[1])] = (value, cells[3])
    return rows


@pytest.mark.slow
@pytest.mark.xdist_group("bench")
def test_quick_core_bench_against_trio_core(ffmpeg: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.core", "--quick", "--ffmpeg", ffmpeg],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| scenario | metric | trio-core | load gen CPU % |" in proc.stdout, proc.stdout
    rows = _rows(proc.stdout)
    for endpoint in ("list", "state"):
        for mode in ("sequential", "2 clients"):
            cpu = rows[(f"API {endpoint} (3 processes), {mode}", "server CPU ms/request")][0]
            assert cpu >= 0, rows
        assert rows[(f"API {endpoint} (3 processes), 2 clients", "requests/s")][0] > 0
    rtmp = "RTMP 6 Mbit/s, 5 players"
    assert rows[(rtmp, "delivered MB/s")][0] > 2.0, rows  # 5 x ~0.77 MB/s, most of it
    assert rows[(rtmp, "players lost")][0] == 0, rows
    assert rows[(rtmp, "server CPU ms per delivered MB")][0] > 0, rows
    assert rows[(rtmp, "server CPU ms per delivered MB")][1] != "", rows  # load gen CPU shown
    hls = "HLS from memfs, 5 readers"
    assert rows[(hls, "served MB/s")][0] > 0, rows
    assert rows[(hls, "reader errors")][0] == 0, rows
    assert rows[("idle, 0 running processes", "server RSS MB")][0] > 10, rows
    assert rows[("idle, 3 running processes", "server RSS MB")][0] > 10, rows
