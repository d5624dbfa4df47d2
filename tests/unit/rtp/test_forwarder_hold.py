"""rtp.forwarder: Sources held across a server reload (issue 22 item 13) — a lease that ends
while holding leaves its Source running for the next lease of the same id; resume() gives
held Sources a deadline; otherwise a lease's end closes its Source before it returns."""

from __future__ import annotations

import trio
import trio.testing

from rtp.forwarder import Forwarder
from rtp.source import Source
from tests.helpers.leaks import open_fds


async def _lease(fwd: Forwarder, nursery: trio.Nursery, kinds: tuple[str, ...] = ("video",)
                 ) -> Source:
    return await nursery.start(fwd.open_source, "cam", kinds)


async def test_a_held_source_is_taken_back_by_the_next_lease() -> None:
    fds = open_fds()
    async with trio.open_nursery() as outer:
        fwd = Forwarder()
        await outer.start(fwd.run)
        async with trio.open_nursery() as process:  # one process's start
            source = await _lease(fwd, process)
            ports = dict(source.ports)
            fwd.hold()
            process.cancel_scope.cancel()
        assert not source.closed and fwd.sources["cam"] is source and "cam" in fwd.held
        async with trio.open_nursery() as process:  # the process after the reload
            fwd.resume(10.0)
            again = await _lease(fwd, process)
            assert again is source and again.ports == ports and not fwd.held
            process.cancel_scope.cancel()
        # not holding: the lease's end closed it before returning
        assert source.closed and "cam" not in fwd.sources
        outer.cancel_scope.cancel()
    assert open_fds() == fds


async def test_a_held_source_not_taken_back_closes_after_the_reclaim_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as outer:
        fwd = Forwarder()
        await outer.start(fwd.run)
        async with trio.open_nursery() as process:
            source = await _lease(fwd, process)
            fwd.hold()
            process.cancel_scope.cancel()
        await trio.sleep(100)  # held without limit until resume()
        assert not source.closed
        fwd.resume(5.0)
        await trio.sleep(4.9)
        assert not source.closed
        await trio.sleep(0.2)
        assert source.closed and "cam" not in fwd.sources and not fwd.held
        outer.cancel_scope.cancel()


async def test_a_held_source_with_other_tracks_is_replaced_and_end_held_closes() -> None:
    async with trio.open_nursery() as outer:
        fwd = Forwarder()
        await outer.start(fwd.run)
        async with trio.open_nursery() as process:
            old = await _lease(fwd, process, ("video",))
            fwd.hold()
            process.cancel_scope.cancel()
        async with trio.open_nursery() as process:
            new = await _lease(fwd, process, ("video", "audio"))
            assert new is not old and old.closed and fwd.sources["cam"] is new
            process.cancel_scope.cancel()  # still holding: kept
        assert not new.closed
        await fwd.end_held()
        assert new.closed and not fwd.held and not fwd.holding
        outer.cancel_scope.cancel()


async def test_cancelling_the_forwarder_ends_held_sources() -> None:
    async with trio.open_nursery() as outer:
        fwd = Forwarder()
        await outer.start(fwd.run)
        async with trio.open_nursery() as process:
            source = await _lease(fwd, process)
            fwd.hold()
            process.cancel_scope.cancel()
        outer.cancel_scope.cancel()
    assert source.closed and not fwd.sources and not fwd.running
