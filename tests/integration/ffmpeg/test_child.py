"""trio_core.ffmpeg.child: parent-death signal, own process group, no leaks, cancellation."""

from __future__ import annotations

import os
import signal
import sys
import threading

import pytest
import trio

from tests.helpers.leaks import child_pids, open_fds
from trio_core.ffmpeg import child as child_module
from trio_core.ffmpeg.child import PIPE, Child, run_process, spawn, wait_or_stop
from trio_core.ffmpeg.procfs import read_proc_stat

PR_GET_PDEATHSIG = 2
REPORT = (
    "import ctypes, os, signal\n"
    "sig = ctypes.c_int(0)\n"
    f"ctypes.CDLL(None).prctl({PR_GET_PDEATHSIG}, ctypes.byref(sig), 0, 0, 0)\n"
    "print(sig.value, os.getpid(), os.getpgid(0), flush=True)\n"
)


@pytest.fixture(params=["setpriv", "preexec"])
def launcher(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of setting the parent-death signal (setpriv must exist on the test machine)."""
    monkeypatch.setattr(child_module, "launcher", request.param)
    return str(request.param)


async def test_a_child_has_the_parent_death_signal_and_its_own_process_group(
        launcher: str) -> None:
    result = await run_process([sys.executable, "-c", REPORT], capture_stdout=True)
    assert result.returncode == 0
    sig, pid, pgid = map(int, result.stdout.split())
    assert sig == signal.SIGKILL
    assert pgid == pid != os.getpgid(0)


async def test_a_child_whose_parent_died_before_the_signal_was_set_does_not_run(
        launcher: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # as if the server had died between fork and prctl: the child's parent is not the
    # expected one any more, so it must end itself instead of running the program
    monkeypatch.setattr(child_module, "_server_pid", lambda: 1)
    result = await run_process([sys.executable, "-c", "print('ran')"], capture_stdout=True)
    assert result.stdout == b""
    assert result.returncode in (-signal.SIGKILL, 137)


async def test_a_missing_program_raises_like_popen(launcher: str, tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        await spawn([str(tmp_path / "no-ffmpeg")])
    with pytest.raises(FileNotFoundError):
        await spawn(["no-such-program-on-path-" + os.urandom(4).hex()])
    (tmp_path / "not-executable").write_text("#!/bin/sh\n")
    with pytest.raises(PermissionError):
        await spawn([str(tmp_path / "not-executable")])


async def test_signals_reach_the_whole_process_group() -> None:
    child = await spawn(["sh", "-c", "sleep 60 & echo $!; wait"], stdout=PIPE)
    try:
        assert child.stdout is not None
        with trio.fail_after(10):
            grandchild = int((await child.stdout.receive_some(100)).split()[0])
        grand = read_proc_stat(grandchild)
        assert grand is not None and grand.pgrp == child.pid
        child.kill()
        assert await child.wait() == -signal.SIGKILL
        with trio.fail_after(5):
            while (st := read_proc_stat(grandchild)) is not None and not st.dead \
                    and st.start_time == grand.start_time:
                await trio.sleep(0.02)
    finally:
        await child.aclose()


async def test_nothing_is_left_after_exit_failure_or_cancellation() -> None:
    fds, kids, threads = open_fds(), child_pids(), threading.active_count()
    with pytest.raises(FileNotFoundError):
        await spawn(["/nonexistent/ffmpeg"], stdin=PIPE, stderr=PIPE)
    result = await run_process(["sh", "-c", "echo out; echo err >&2; exit 3"],
                               capture_stdout=True, capture_stderr=True)
    assert (result.returncode, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    with trio.move_on_after(0.5) as cancelled:
        await run_process(["sleep", "60"])
    assert cancelled.cancelled_caught
    stopped: list[int] = []

    async def stop(child: Child) -> None:  # a graceful stop, cancelled once the child exited
        stopped.append(1)
        child.terminate()
        await trio.sleep_forever()

    child = await spawn(["sleep", "60"])
    with trio.move_on_after(0.3):
        await wait_or_stop(child, stop)
    assert stopped == [1] and child.returncode == -signal.SIGTERM
    with trio.fail_after(5):  # each watcher thread ends right after its child
        while threading.active_count() > threads:
            await trio.sleep(0.01)
    assert open_fds() == fds
    assert child_pids() == kids


async def test_a_stopped_child_is_seen_as_stopped_and_killable() -> None:
    child = await spawn(["sleep", "60"])
    try:
        assert not child.stopped
        child.send_signal(signal.SIGSTOP)
        with trio.fail_after(5):
            while not child.stopped:
                await trio.sleep(0.01)
        child.kill()
        assert await child.wait() == -signal.SIGKILL
        assert child.stat() is None and not child.stopped
        child.kill()  # after the reap: a no-op, never a signal to a recycled pid
    finally:
        await child.aclose()
