"""Smoke test of ``python -m bench.rtmp --quick``: the server child starts, players receive
the 6 Mbit/s stream and the table prints. No timing assertions (the machine is shared)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
@pytest.mark.xdist_group("bench")
def test_quick_rtmp_bench(tmp_path: Path) -> None:
    out = tmp_path / "rtmp.json"
    proc = subprocess.run([sys.executable, "-m", "bench.rtmp", "--quick", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RTMP fan-out" in proc.stdout and "CPU ms/MB" in proc.stdout, proc.stdout
    results = json.loads(out.read_text())
    assert [r["players"] for r in results] == [1, 5]
    for r in results:
        # every player got (nearly) the whole stream: it is delivered, not just connected
        assert r["delivered_mbyte_s"] >= 0.5 * r["expected_mbyte_s"], r
        assert r["lost"] == 0, r
        assert r["delay_p50_ms"] is not None, r
        assert r["cpu_ms_per_mbyte"] is not None and r["cpu_ms_per_mbyte"] > 0, r
