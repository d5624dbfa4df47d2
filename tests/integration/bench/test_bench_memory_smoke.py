"""Smoke test of ``python -m bench.memory --quick``: real servers (idle default config, idle
WebRTC off, 3 stopped and 3 running lavfi processes) and the RSS table.

Asserts that every row printed with a plausible RSS; no memory bound here (that is
``tests/integration/server/test_lazy_imports.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
@pytest.mark.xdist_group("bench")
def test_memory_bench_runs(ffmpeg: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, CORE_FFMPEG_BINARY=ffmpeg),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [[c.strip() for c in line.strip("|").split("|")]
            for line in proc.stdout.splitlines() if line.startswith(("| idle", "| stopped",
                                                                     "| running"))]
    assert [(r[0], r[1]) for r in rows] == [
        ("idle, default config", "0"), ("idle, WebRTC off", "0"),
        ("stopped processes", "3"), ("running processes", "3")]
    for r in rows:
        assert 10 < float(r[2]) < 1000 and 10 < float(r[3]) < 1000
