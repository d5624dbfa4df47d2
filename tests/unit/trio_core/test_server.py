"""trio_core.server.run_restarting: a subsystem that fails is restarted with backoff (fake clock)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from trio_core.server import run_restarting


class Flaky:
    """Reports ready, then fails ``failures`` times (each after ``alive`` seconds), then serves."""

    def __init__(self, failures: int, alive: float = 0.1) -> None:
        self.failures = failures
        self.alive = alive
        self.starts: list[float] = []

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        self.starts.append(trio.current_time())
        task_status.started(len(self.starts))
        await trio.sleep(self.alive)
        if len(self.starts) <= self.failures:
            raise RuntimeError(f"failure {len(self.starts)}")
        await trio.sleep_forever()


async def test_failed_run_is_restarted_with_doubling_backoff(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    flaky = Flaky(failures=4)
    async with trio.open_nursery() as nursery:
        first = await nursery.start(lambda task_status: run_restarting(
            flaky, backoff=(0.5, 1.5), task_status=task_status))
        assert first == 1
        await trio.sleep(60)
        nursery.cancel_scope.cancel()
    assert len(flaky.starts) == 5  # four failures, the fifth run stays up
    gaps = [b - a - flaky.alive for a, b in zip(flaky.starts, flaky.starts[1:], strict=False)]
    assert gaps == pytest.approx([0.5, 1.0, 1.5, 1.5])  # doubling, capped
    failed = [r for r in caplog.records if "Flaky failed; restarting" in r.getMessage()]
    assert len(failed) == 4 and all(r.exc_info for r in failed)


async def test_backoff_starts_over_after_a_long_run(autojump_clock: trio.testing.MockClock) -> None:
    flaky = Flaky(failures=3, alive=10.0)  # each run outlives the largest wait
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: run_restarting(
            flaky, backoff=(0.5, 2.0), task_status=task_status))
        await trio.sleep(100)
        nursery.cancel_scope.cancel()
    gaps = [b - a - flaky.alive for a, b in zip(flaky.starts, flaky.starts[1:], strict=False)]
    assert gaps == pytest.approx([0.5, 0.5, 0.5])


async def test_failure_before_ready_fails_the_start(autojump_clock: trio.testing.MockClock) -> None:
    class Broken:
        async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
                      ) -> None:
            raise OSError("port taken")

    async with trio.open_nursery() as nursery:
        with pytest.raises(OSError, match="port taken"):
            await nursery.start(run_restarting, Broken())


async def test_a_run_that_returns_is_not_restarted(autojump_clock: trio.testing.MockClock) -> None:
    runs: list[int] = []

    class Done:
        async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
                      ) -> None:
            runs.append(1)
            task_status.started()

    async with trio.open_nursery() as nursery:
        await nursery.start(run_restarting, Done())
    assert runs == [1]
