"""trio_core.engine.process (driven by trio_core.engine.supervisor) on a virtual clock with a fake child.

``trio.testing.MockClock(autojump_threshold=0)`` (pytest-trio's ``autojump_clock``) jumps
time forward whenever every task waits, so the engine's real waits — reconnect delay, stale
timeout, the q → SIGTERM → SIGKILL stop grace, the stop hooks' deadline — pass in
milliseconds and are measured exactly. :class:`FakeChild` replaces ``spawn``: it records
what the engine sends it (``q`` on stdin, signals) with the virtual time, and exits as the
test scripts it (on ``q``, on SIGTERM, by itself, or never until SIGKILL).
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from typing import Any

import pytest
import trio
import trio.testing

from trio_core.engine import process as process_module
from trio_core.engine.hooks import RunContext
from trio_core.engine.process import DEFAULT_TIMINGS, EngineTimings, classify_exit, signal_name
from trio_core.engine.process_config import ProcessConfig
from trio_core.engine.supervisor import Supervisor


class FakeStdin(trio.abc.SendStream):
    def __init__(self, child: FakeChild) -> None:
        self.child = child

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.child.on_stdin(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        return

    async def aclose(self) -> None:
        return


class FakeStderr(trio.abc.ReceiveStream):
    """FFmpeg's stderr: EOF once the child has exited."""

    def __init__(self, child: FakeChild) -> None:
        self.child = child

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await self.child.exited.wait()
        return b""

    async def aclose(self) -> None:
        return


class FakeChild:
    """The part of :class:`trio_core.ffmpeg.child.Child` the engine uses, with scripted behaviour."""

    def __init__(self, events: list[tuple[float, str]], *, obeys_q: bool = True,
                 obeys_term: bool = True) -> None:
        self.events = events
        self.obeys_q = obeys_q
        self.obeys_term = obeys_term
        self.pid = -1  # /proc/-1 does not exist: the watchdog samples nothing
        self.start_time = 0
        self.returncode: int | None = None
        self.stopped = False
        self.exited = trio.Event()
        self.stdin = FakeStdin(self)
        self.stderr = FakeStderr(self)

    def _record(self, what: str) -> None:
        self.events.append((trio.current_time(), what))

    def exit(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._record(f"exit {code}")
            self.exited.set()

    def on_stdin(self, data: bytes) -> None:
        self._record(f"stdin {data!r}")
        if data == b"q\n" and self.obeys_q and not self.stopped:
            self.exit(255)

    def terminate(self) -> None:
        self._record("SIGTERM")
        if self.obeys_term and not self.stopped:
            self.exit(-signal.SIGTERM)

    def kill(self) -> None:
        self._record("SIGKILL")
        self.exit(-signal.SIGKILL)

    async def wait(self) -> int:
        await self.exited.wait()
        assert self.returncode is not None
        return self.returncode


class Fakes:
    """Installs a fake ``spawn``; ``script`` says how the next children behave."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[float, str]] = []
        self.children: list[FakeChild] = []
        self.behaviour: dict[str, Any] = {}
        self.exit_after: float | None = None  # the child exits by itself (code 1) after this
        self.spawn_fails = False
        monkeypatch.setattr(process_module, "spawn", self.spawn)

    async def spawn(self, argv: Sequence[str], **_: Any) -> FakeChild:
        self.events.append((trio.current_time(), "spawn"))
        if self.spawn_fails:
            raise FileNotFoundError(2, "No such file or directory", argv[0])
        child = FakeChild(self.events, **self.behaviour)
        self.children.append(child)
        if self.exit_after is not None:
            trio.lowlevel.spawn_system_task(self._exit_later, child, self.exit_after)
        return child

    @staticmethod
    async def _exit_later(child: FakeChild, seconds: float) -> None:
        await trio.sleep(seconds)
        child.exit(1)

    def times(self, what: str) -> list[float]:
        return [t for t, e in self.events if e == what]


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Fakes:
    return Fakes(monkeypatch)


def config(**extra: Any) -> ProcessConfig:
    obj: dict[str, Any] = {
        "id": "p",
        "input": [{"id": "in", "address": "testsrc", "options": ["-f", "lavfi"]}],
        "output": [{"id": "out", "address": "-", "options": ["-f", "null"]}],
    }
    obj.update(extra)
    return ProcessConfig.from_json(obj)


def log_text(sup: Supervisor) -> str:
    return "\n".join(entry[1] for entry in sup.get("p").report_json()["log"])


async def wait_until(predicate: Any) -> None:
    with trio.fail_after(600):  # virtual seconds
        while not predicate():
            await trio.sleep(0.01)


def test_timings_defaults_are_the_documented_production_values() -> None:
    assert DEFAULT_TIMINGS == EngineTimings(grace_after_q=3.0, grace_after_term=2.0,
                                            watch_interval=1.0, stop_poll=0.1,
                                            hook_stop_timeout=5.0)
    with pytest.raises(AttributeError):
        DEFAULT_TIMINGS.grace_after_q = 1.0  # type: ignore[misc]
    assert Supervisor(ffmpeg="ffmpeg").timings is DEFAULT_TIMINGS
    fast = EngineTimings(grace_after_q=0.5)
    assert Supervisor(ffmpeg="ffmpeg", timings=fast).timings is fast


def test_exit_classification_and_signal_names() -> None:
    assert [classify_exit(c) for c in (0, 255, 1, -9)] == ["finished", "finished", "failed",
                                                           "killed"]
    assert signal_name(9) == "SIGKILL" and signal_name(99) == "signal 99"


async def test_reconnect_waits_exactly_the_configured_delay(
        fakes: Fakes, autojump_clock: trio.testing.MockClock) -> None:
    fakes.exit_after = 0.5
    async with trio.open_nursery() as nursery:
        sup = Supervisor(ffmpeg="ffmpeg")
        await nursery.start(sup.run)
        await sup.add(config(reconnect=True, reconnect_delay_seconds=7))
        await wait_until(lambda: len(fakes.times("spawn")) >= 3)
        spawns = fakes.times("spawn")
        exits = fakes.times("exit 1")
        assert [round(b - a, 6) for a, b in zip(exits, spawns[1:], strict=False)] == [7.0, 7.0]
        assert sup.get("p").runs >= 2
        nursery.cancel_scope.cancel()


async def test_no_reconnect_means_one_run(fakes: Fakes,
                                          autojump_clock: trio.testing.MockClock) -> None:
    fakes.exit_after = 0.5
    async with trio.open_nursery() as nursery:
        sup = Supervisor(ffmpeg="ffmpeg")
        await nursery.start(sup.run)
        await sup.add(config(reconnect=False, reconnect_delay_seconds=1))
        await trio.sleep(60)
        assert len(fakes.times("spawn")) == 1
        assert sup.get("p").state_json()["exec"] == "failed"
        nursery.cancel_scope.cancel()


async def test_a_spawn_failure_with_delay_0_is_retried_after_1s_not_in_a_spin(
        fakes: Fakes, autojump_clock: trio.testing.MockClock) -> None:
    fakes.spawn_fails = True
    async with trio.open_nursery() as nursery:
        sup = Supervisor(ffmpeg="ffmpeg")
        await nursery.start(sup.run)
        await sup.add(config(reconnect=True, reconnect_delay_seconds=0))
        await wait_until(lambda: len(fakes.times("spawn")) >= 4)
        spawns = fakes.times("spawn")
        assert [round(b - a, 6) for a, b in zip(spawns, spawns[1:], strict=False)] == [1.0] * 3
        assert "Failed to start FFmpeg" in log_text(sup)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("timings", [DEFAULT_TIMINGS, EngineTimings(watch_interval=0.25)])
async def test_stale_timeout_stops_with_q_within_one_watch_interval(
        fakes: Fakes, autojump_clock: trio.testing.MockClock, timings: EngineTimings) -> None:
    async with trio.open_nursery() as nursery:
        sup = Supervisor(ffmpeg="ffmpeg", timings=timings)
        await nursery.start(sup.run)
        await sup.add(config(stale_timeout_seconds=2, reconnect=True, reconnect_delay_seconds=3))
        await wait_until(lambda: len(fakes.times("spawn")) >= 2)
        (spawn, respawn), (q,) = fakes.times("spawn"), fakes.times("stdin b'q\\n'")[:1]
        assert 2.0 <= q - spawn < 2.0 + timings.watch_interval
        assert respawn - q == pytest.approx(3.0)  # the child obeyed q at once; then the delay
        assert "Stopping because of stale timeout: no progress for 2 s" in "\n".join(
            line for run in sup.get("p").report_json()["history"] for _, line in run["log"])
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("timings", [DEFAULT_TIMINGS,
                                     EngineTimings(grace_after_q=0.5, grace_after_term=0.2)])
async def test_stop_escalates_q_then_sigterm_then_sigkill(
        fakes: Fakes, autojump_clock: trio.testing.MockClock, timings: EngineTimings) -> None:
    fakes.behaviour = {"obeys_q": False, "obeys_term": False}
    async with trio.open_nursery() as nursery:
        sup = Supervisor(ffmpeg="ffmpeg", timings=timings)
        await nursery.start(sup.run)
        await sup.add(config())
        await wait_until(lambda: sup.get("p").state_json()["exec"] == "running")
        start = trio.current_time()
        await sup.command("p", "stop")
        took = trio.current_time() - start
        (q,), (term,), (kill,) = (fakes.times(e) for e in ("stdin b'q\\n'", "SIGTERM", "SIGKILL"))
        assert term - q == pytest.approx(timings.grace_after_q)
        assert kill - term == pytest.approx(timings.grace_after_term)
        assert took == pytest.approx(timings.grace_after_q + timings.grace_after_term)
        assert sup.get("p").state_json()["exec"] == "killed"
        text = log_text(sup)
        assert "did not stop after q and SIGTERM; sending SIGKILL" in text
        assert "FFmpeg killed by signal SIGKILL" in text
        nursery.cancel_scope.cancel()


async def test_sigterm_ends_it_when_q_does_not(fakes: Fakes,
                                               autojump_clock: trio.testing.MockClock) -> None:
    fakes.behaviour = {"obeys_q": False, "obeys_term": True}
    async with trio.open_nursery() as nursery:
        sup = Supervisor(ffmpeg="ffmpeg")
        await nursery.start(sup.run)
        await sup.add(config())
        await wait_until(lambda: sup.get("p").state_json()["exec"] == "running")
        start = trio.current_time()
        await sup.command("p", "stop")
        assert trio.current_time() - start == pytest.approx(DEFAULT_TIMINGS.grace_after_q)
        assert fakes.times("SIGKILL") == []
        assert sup.get("p").state_json()["exec"] == "killed"
        assert "FFmpeg killed by signal SIGTERM" in log_text(sup)
        nursery.cancel_scope.cancel()


async def test_a_stopped_child_is_killed_at_once_on_stop(
        fakes: Fakes, autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        sup = Supervisor(ffmpeg="ffmpeg", timings=EngineTimings(watch_interval=1000.0))
        await nursery.start(sup.run)
        await sup.add(config())
        await wait_until(lambda: sup.get("p").state_json()["exec"] == "running")
        fakes.children[0].stopped = True
        start = trio.current_time()
        await sup.command("p", "stop")
        assert trio.current_time() == start  # no grace period waited on
        assert fakes.times("stdin b'q\\n'") == [] and len(fakes.times("SIGKILL")) == 1
        assert "FFmpeg is stopped (state T" in log_text(sup)
        nursery.cancel_scope.cancel()


async def test_a_child_stopped_during_the_grace_is_killed_at_the_next_poll(
        fakes: Fakes, autojump_clock: trio.testing.MockClock) -> None:
    fakes.behaviour = {"obeys_q": False, "obeys_term": False}
    async with trio.open_nursery() as nursery:
        sup = Supervisor(ffmpeg="ffmpeg", timings=EngineTimings(stop_poll=0.25))
        await nursery.start(sup.run)
        await sup.add(config())
        await wait_until(lambda: sup.get("p").state_json()["exec"] == "running")

        async def sigstop_later() -> None:
            await trio.sleep(1.1)
            fakes.children[0].stopped = True

        nursery.start_soon(sigstop_later)
        start = trio.current_time()
        await sup.command("p", "stop")
        assert trio.current_time() - start == pytest.approx(1.25)  # next poll after 1.1 s
        assert fakes.times("SIGTERM") == [] and len(fakes.times("SIGKILL")) == 1
        nursery.cancel_scope.cancel()


async def test_the_watchdog_kills_a_stopped_child_within_one_interval(
        fakes: Fakes, autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        sup = Supervisor(ffmpeg="ffmpeg", timings=EngineTimings(watch_interval=0.5))
        await nursery.start(sup.run)
        await sup.add(config())
        await wait_until(lambda: sup.get("p").state_json()["exec"] == "running")
        spawned = fakes.times("spawn")[0]
        await trio.sleep(1.2)
        fakes.children[0].stopped = True
        await wait_until(lambda: fakes.times("SIGKILL"))
        assert fakes.times("SIGKILL")[0] - spawned == pytest.approx(1.5)
        assert sup.get("p").state_json()["exec"] == "killed"
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("timings", [DEFAULT_TIMINGS, EngineTimings(hook_stop_timeout=0.3)])
async def test_stop_hooks_are_cut_at_their_deadline(
        fakes: Fakes, autojump_clock: trio.testing.MockClock, timings: EngineTimings) -> None:
    calls: list[tuple[str, bool]] = []

    class SlowStop:
        async def on_start(self, ctx: RunContext) -> None:
            calls.append(("start", False))

        async def on_stop(self, ctx: RunContext, final: bool) -> None:
            calls.append(("stop", final))
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        sup = Supervisor(ffmpeg="ffmpeg", timings=timings)
        sup.add_hook(SlowStop())
        await nursery.start(sup.run)
        await sup.add(config())
        await wait_until(lambda: sup.get("p").state_json()["exec"] == "running")
        start = trio.current_time()
        await sup.command("p", "stop")
        assert trio.current_time() - start == pytest.approx(timings.hook_stop_timeout)
        assert calls == [("start", False), ("stop", True)]
        assert "Stop hooks timed out" in log_text(sup), sup.get("p").report_json()
        nursery.cancel_scope.cancel()
