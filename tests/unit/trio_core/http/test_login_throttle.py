"""trio_core.http.login_throttle on a virtual clock: failures back off 1, 2, 4 s (capped), one
address at a time; a success resets; too many waiting are refused at once."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_core.http.login_throttle import LoginThrottle, Throttled


async def test_failures_back_off_exponentially_and_success_resets(
        autojump_clock: trio.testing.MockClock) -> None:
    throttle = LoginThrottle(delay=1.0, max_delay=5.0)
    waits = []
    for outcome in ("failed", "failed", "failed", "failed", "succeeded", "failed"):
        start = trio.current_time()
        async with throttle.attempt("10.0.0.1") as attempt:
            getattr(attempt, outcome)()
        waits.append(trio.current_time() - start)
    assert waits == pytest.approx([1.0, 2.0, 4.0, 5.0, 0.0, 1.0])
    async with throttle.attempt("10.0.0.2") as attempt:  # another address is not slowed
        attempt.failed()
    assert len(throttle) == 2


async def test_parallel_attempts_queue_and_the_overflow_is_refused(
        autojump_clock: trio.testing.MockClock) -> None:
    throttle = LoginThrottle(delay=1.0, max_delay=30.0, max_waiting=3)
    done: list[float] = []
    refused: list[float] = []

    async def guess() -> None:
        try:
            async with throttle.attempt("10.0.0.1") as attempt:
                attempt.failed()
        except Throttled as exc:
            refused.append(float(str(exc).split()[-1].rstrip("s")))
            return
        done.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(guess)
    assert done == pytest.approx([1.0, 3.0, 7.0])  # one by one, each waiting longer
    assert refused == [30.0]
