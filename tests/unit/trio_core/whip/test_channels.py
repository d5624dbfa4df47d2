"""trio_core.whip.channels over a real Forwarder (loopback UDP mux): one publisher per name,
also when offers for a name race; DELETE frees the name while the channel lingers."""

from __future__ import annotations

import trio

from rtp.forwarder import Forwarder
from tests.helpers.sdp_samples import CHROMIUM_OFFER
from trio_core.whip.channels import Busy, WhipChannels, source_id

OFFER = CHROMIUM_OFFER.replace("a=recvonly", "a=sendonly")


async def test_racing_offers_for_one_name_one_wins() -> None:
    forwarder = Forwarder()
    async with trio.open_nursery() as nursery:
        await nursery.start(forwarder.run)
        channels = WhipChannels(forwarder, linger=30)
        await nursery.start(channels.run)
        outcomes: list[str] = []

        async def publish() -> None:
            try:
                await channels.publish("cam", OFFER, client="127.0.0.1")
                outcomes.append("published")
            except Busy:
                outcomes.append("busy")

        async with trio.open_nursery() as racers:
            for _ in range(3):
                racers.start_soon(publish)
        assert sorted(outcomes) == ["busy", "busy", "published"]
        publisher = channels.publisher("cam")
        assert publisher is not None and source_id("cam") in forwarder.sources
        assert channels.end("cam", publisher.id) and channels.publisher("cam") is None
        assert source_id("cam") in forwarder.sources  # lingering for its viewers
        await channels.publish("cam", OFFER)  # the name is free again: same Source
        assert channels.channels["cam"].publishers == 2
        nursery.cancel_scope.cancel()
