"""``rtp/_fanout.c`` built with AddressSanitizer and UndefinedBehaviorSanitizer runs the
fan-out tests (issue 18): worker threads, storms of joins/leaves/closes, replays and NACK
resends, a Source stopping, engine shutdown — any use after free, double free of a libsrtp
session, buffer overflow or undefined behaviour aborts the run.

The extension is compiled with the system's gcc into a temporary copy of the ``rtp``
package; a child Python (with ``libasan`` preloaded, as a sanitized extension in an
unsanitized interpreter needs) imports ``rtp`` from that copy and runs
``tests/unit/rtp/test_fanout.py``, ``test_fanout_workers.py`` and ``test_fanout_stream.py``
(ICE-TCP stream viewers: partial writes, the C queue, detach) and ``test_fanout_sinks.py``
(RTMP sinks, issue 23: chunk headers built in C, partial writes, skip/drop, close, engine
close with open sinks, the shared pool) there. Leak checking is
off (CPython itself keeps memory until exit).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
TESTS = ["tests/unit/rtp/test_fanout.py", "tests/unit/rtp/test_fanout_workers.py",
         "tests/unit/rtp/test_srtp_gcm.py",
         "tests/unit/rtp/test_fanout_stream.py", "tests/unit/rtp/test_fanout_sinks.py"]

RUNNER = """
import sys
sys.path.insert(0, {copy!r})
import rtp._fanout
assert rtp._fanout.__file__.startswith({copy!r}), rtp._fanout.__file__
assert "libasan" in open("/proc/self/maps").read()
import pytest
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "-n", "0", "-x", *{tests!r}]))
"""


def sanitizer_runtime() -> str:
    cc = shutil.which("gcc")
    assert cc is not None, "gcc is needed (it builds the C fan-out too): see .ci/run"
    path = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert os.path.isabs(path) and os.path.exists(path), f"no libasan for gcc: {path!r}"
    return os.path.realpath(path)


@pytest.mark.slow
def test_the_fan_out_tests_pass_under_asan_and_ubsan(tmp_path: Path) -> None:
    copy = tmp_path / "build"
    package = copy / "rtp"
    package.mkdir(parents=True)
    for source in (ROOT / "rtp").glob("*.py"):
        shutil.copy(source, package / source.name)
    target = package / ("_fanout" + sysconfig.get_config_var("EXT_SUFFIX"))
    build = subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O1", "-g", "-fno-omit-frame-pointer",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-Wall", "-Werror",
         "-I", sysconfig.get_paths()["include"], str(ROOT / "rtp" / "_fanout.c"), "-o",
         str(target), "-lpthread"],
        capture_output=True, text=True, check=False)
    assert build.returncode == 0, build.stderr
    env = dict(os.environ)
    env.update({
        "LD_PRELOAD": sanitizer_runtime(),
        "ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=86",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=87",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    env.pop("RTP_FANOUT", None)
    result = subprocess.run([sys.executable, "-c", RUNNER.format(copy=str(copy), tests=TESTS)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    output = result.stdout[-4000:] + result.stderr[-8000:]
    assert "ERROR: AddressSanitizer" not in output, output
    assert "runtime error" not in output, output
    assert result.returncode == 0, output
    assert " passed" in result.stdout and "skipped" not in result.stdout, output
