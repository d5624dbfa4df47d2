"""Smoke test of ``python -m bench.api --quick``: a real server, three running lavfi
processes, both endpoints sequential and concurrent.

Asserts that every scenario ran, answered non-empty bodies and that the table printed; no
timing assertions (shared machine).
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
def test_api_bench_runs(ffmpeg: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.api", "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, CORE_FFMPEG_BINARY=ffmpeg),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [[c.strip() for c in line.strip("|").split("|")]
            for line in proc.stdout.splitlines()
            if line.startswith(("| list ", "| state "))]
    assert [(r[0], r[1]) for r in rows] == [("list", "sequential"), ("list", "2 clients"),
                                            ("state", "sequential"), ("state", "2 clients")]
    for r in rows:
        assert int(r[2]) > 0 and float(r[7]) > 0  # requests answered, server CPU measured
    assert int(rows[0][10]) > 1000 and int(rows[2][10]) > 100  # list and state bodies
