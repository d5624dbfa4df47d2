"""Smoke test of ``python -m bench.metrics_cost``: two viewers, one short window each way.

Asserts that the real server forwarded packets to the viewers in both windows, that the
scrape windows scraped and that the table printed; no timing assertions (shared machine).
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
def test_metrics_cost_bench_runs(ffmpeg: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.metrics_cost", "--viewers", "2", "--window", "2",
         "--rounds", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
        env=dict(os.environ, CORE_FFMPEG_BINARY=ffmpeg),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split("|") for line in proc.stdout.splitlines()
            if line.startswith("| 1 ") or line.startswith("| 2 ")]
    assert len(rows) == 2, proc.stdout
    off, on = rows
    assert off[2].strip() == "off" and on[2].strip() == "1 s"
    assert int(off[4]) > 0 and int(on[4]) > 0  # packets forwarded in both windows
    assert int(on[8]) > 1000  # the scrape returned an exposition
    assert "**" in proc.stdout  # the totals
