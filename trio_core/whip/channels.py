"""WHIP channels: one publisher per name, its Source, and the viewers that outlive it.

A :class:`Channel` is a name being published (or recently published). Its
:class:`~rtp.source.Source` is a lease of the WebRTC forwarder under the id ``whip:<name>``
(made with ``sockets=False``: the publisher's decrypted RTP feeds it), so viewers play it
through the same fan-out, GOP cache and admission limits as process sources. When the
publisher goes (DELETE, timeout, consent failure, BYE) the channel stays for
``linger`` seconds with its viewers connected; a publisher that comes back under the same
name within that time feeds the same Source (the Source hides the new SSRC/sequence/
timestamps, the viewers' decoders get a keyframe: we ask the new publisher for one), so the
viewers get video again without a new offer. A returning publisher whose codecs differ
from the channel's ends the old channel (its viewers cannot decode the new codec) first.

Limits: ``max_publishers`` channels with a publisher, ``max_pending`` publishers still
connecting (ICE/DTLS), both 503 + ``Retry-After`` (:class:`~rtp.errors.Overloaded`).

Cancellation: :meth:`WhipChannels.run` owns a nursery in which every channel's Source lease
and every publisher's timer task run; cancelling it closes every publisher (DTLS
close_notify), every Source and so every viewer of a WHIP channel.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from rtp.errors import Overloaded

if TYPE_CHECKING:
    from rtp.forwarder import Forwarder
    from rtp.publisher import Publisher
    from rtp.source import Source
    from rtp.whip_sdp import PublishAnswer

__all__ = ["Busy", "Channel", "WhipChannels", "check_name", "source_id"]

log = logging.getLogger(__name__)

KINDS = ("video", "audio")
JANITOR_INTERVAL = 1.0


def source_id(name: str) -> str:
    """The forwarder's Source id of channel ``name``."""
    return f"whip:{name}"


class Busy(Exception):
    """The name has a live publisher (HTTP 409)."""


@dataclass(eq=False)
class Channel:
    name: str
    source: Source
    scope: trio.CancelScope
    codecs: dict[str, str]  # kind -> rtpmap of the codec the channel carries
    publisher: Publisher | None = None
    idle_since: float | None = None
    publishers: int = 0  # publishers seen (1 + comebacks)
    done: trio.Event = field(default_factory=trio.Event)


class WhipChannels:
    """The channels of one WHIP subsystem over one running Forwarder."""

    def __init__(self, forwarder: Forwarder, *, media_timeout: float = 10.0,
                 linger: float = 30.0, max_publishers: int = 20, max_pending: int = 10,
                 max_bitrate: int = 6_000_000, setup_timeout: float = 15.0,
                 on_publisher: Callable[[str, Publisher, bool], None] | None = None) -> None:
        self.forwarder = forwarder
        self.media_timeout = media_timeout
        self.linger = linger
        self.max_publishers = max_publishers
        self.max_pending = max_pending
        self.max_bitrate = max_bitrate
        self.setup_timeout = setup_timeout
        #: told (name, publisher, opened) when a publisher opens (True) or closes (False)
        self.on_publisher = on_publisher
        self.channels: dict[str, Channel] = {}
        self._opening: set[str] = set()  # names whose channel is being opened
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Serve until cancelled (see the module docstring)."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._janitor)
                task_status.started(self)
        finally:
            self._nursery = None
            for channel in list(self.channels.values()):
                if channel.publisher is not None:
                    channel.publisher.close("server stopping")
            self.channels.clear()

    # -- queries -------------------------------------------------------------------------

    def publisher(self, name: str) -> Publisher | None:
        channel = self.channels.get(name)
        return None if channel is None else channel.publisher

    def publishers(self) -> list[tuple[str, Publisher]]:
        return [(n, c.publisher) for n, c in list(self.channels.items())
                if c.publisher is not None]

    # -- publishing ----------------------------------------------------------------------

    async def publish(self, name: str, offer_sdp: str, *, client: str = ""
                      ) -> tuple[Publisher, PublishAnswer]:
        """Take a publisher's offer for ``name``. Raises SdpError (400: malformed offer or
        no usable codec), Busy (409: the name has a live publisher), Overloaded (503),
        RuntimeError (not running)."""
        from rtp.publisher import Publisher
        from rtp.whip_sdp import (
            build_publish_answer,
            choose_tracks,
            parse_publish_offer,
            source_tracks,
        )

        if self._nursery is None or not self.forwarder.running or self.forwarder.port == 0:
            raise RuntimeError("the WHIP server is not running")
        offer = parse_publish_offer(offer_sdp)
        tracks = choose_tracks(offer)
        channel = self.channels.get(name)
        if (channel is not None and channel.publisher is not None) or name in self._opening:
            raise Busy(f"{name!r} is being published (one publisher per name: DELETE it or "
                       "wait until it times out)")
        self._admit(channel)
        codecs = {k: t.codec.rtpmap() for k, t in tracks.items()}
        self._opening.add(name)  # the awaits below: a second offer for the name gets 409
        try:
            if channel is not None and any(channel.codecs.get(k) not in (None, v)
                                           for k, v in codecs.items()):
                log.info("WHIP: %r comes back with other codecs (%s, was %s); its viewers "
                         "are ended", name, codecs, channel.codecs)
                await self._end(channel)
                channel = None
            if channel is None or channel.source.closed:
                channel = await self._open(name, codecs)
            else:
                channel.codecs.update(codecs)
        finally:
            self._opening.discard(name)
        ice_ufrag = secrets.token_hex(4)
        ice_pwd = secrets.token_hex(16)
        answer = build_publish_answer(offer, tracks, ice_ufrag=ice_ufrag, ice_pwd=ice_pwd,
                                      fingerprint=self.forwarder.certificate.fingerprint,
                                      candidates=self.forwarder.candidates,
                                      tcp_candidates=self.forwarder.tcp_candidates)
        source = channel.source
        described = source_tracks(tracks)
        for kind in described:
            source.state[kind].sprop = []  # a new encoder: learn its parameter sets anew
        source.set_tracks({**source.tracks, **described})
        publisher = Publisher(
            session_id=secrets.token_urlsafe(16), source=source, mux=self.forwarder.mux,
            certificate=self.forwarder.certificate, remote_fingerprint=offer.fingerprint,
            dtls_role=answer.dtls_role, ice_ufrag=ice_ufrag, ice_pwd=ice_pwd,
            remote_ufrag=offer.ice_ufrag, tracks=tracks,
            consent_timeout=self.forwarder.consent_timeout, setup_timeout=self.setup_timeout,
            media_timeout=self.media_timeout, max_bitrate=self.max_bitrate, client=client,
            on_close=lambda p: self._closed(channel, p))
        channel.publisher = publisher
        channel.idle_since = None
        channel.publishers += 1
        source.upstream = publisher
        self.forwarder.mux.register(publisher)
        self._nursery.start_soon(publisher.run)
        if channel.publishers > 1:
            self._nursery.start_soon(self._ask_keyframes, publisher)
        if self.on_publisher is not None:
            self.on_publisher(name, publisher, True)
        return publisher, answer

    def restart_ice(self, publisher: Publisher, remote_ufrag: str) -> str:
        """ICE restart of ``publisher`` (WHIP PATCH with its new ufrag/pwd): new local
        credentials (:meth:`rtp.publisher.Publisher.restart_ice`) and the sdpfrag to answer
        with — ufrag, pwd and the candidates, built as for a WHEP viewer's restart."""
        from rtp.sdp import build_restart_sdpfrag

        ufrag, pwd = publisher.restart_ice(remote_ufrag)
        tracks = sorted(publisher.tracks.values(), key=lambda t: t.mid)
        return build_restart_sdpfrag(ice_ufrag=ufrag, ice_pwd=pwd,
                                     mids=[t.mid for t in tracks],
                                     kinds=[t.kind for t in tracks],
                                     candidates=self.forwarder.candidates,
                                     tcp_candidates=self.forwarder.tcp_candidates)

    def end(self, name: str, session: str, reason: str = "deleted by the client (WHIP DELETE)"
            ) -> bool:
        """End the publisher ``session`` of ``name``; False when there is no such one."""
        channel = self.channels.get(name)
        if channel is None or channel.publisher is None or channel.publisher.id != session:
            return False
        channel.publisher.close(reason)
        return True

    # -- internals -----------------------------------------------------------------------

    def _admit(self, channel: Channel | None) -> None:
        live = [c for c in self.channels.values() if c.publisher is not None]
        if self.max_publishers and len(live) >= self.max_publishers:
            raise Overloaded("whip.max_publishers",
                             f"{len(live)} WHIP publishers (whip.max_publishers)", 5)
        pending = sum(1 for c in live if not c.publisher.live)  # type: ignore[union-attr]
        if self.max_pending and pending >= self.max_pending:
            raise Overloaded("whip.max_pending",
                             f"{pending} WHIP publishers still connecting (whip.max_pending)", 2)

    async def _open(self, name: str, codecs: dict[str, str]) -> Channel:
        assert self._nursery is not None
        existing = self.channels.get(name)
        if existing is not None:
            await self._end(existing)
        scope = trio.CancelScope()
        source: Source = await self._nursery.start(self._lease, name, scope)
        channel = Channel(name, source, scope, dict(codecs))
        self.channels[name] = channel
        return channel

    async def _lease(self, name: str, scope: trio.CancelScope, *,
                     task_status: trio.TaskStatus[Source] = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            try:
                await self.forwarder.open_source(source_id(name), KINDS, sockets=False,
                                                 task_status=task_status)
            finally:
                channel = self.channels.get(name)
                if channel is not None and channel.scope is scope:
                    del self.channels[name]
                    channel.done.set()
                    if channel.publisher is not None:
                        channel.publisher.close("channel closed")

    async def _end(self, channel: Channel) -> None:
        if channel.publisher is not None:
            channel.publisher.close("channel replaced")
        channel.scope.cancel()
        if self.channels.get(channel.name) is channel:
            await channel.done.wait()

    def _closed(self, channel: Channel, publisher: Publisher) -> None:
        if channel.publisher is publisher:
            channel.publisher = None
            channel.idle_since = trio.current_time()
            log.info("WHIP: %r lost its publisher (%s); viewers wait %g s for another",
                     channel.name, publisher.close_reason, self.linger)
        if self.on_publisher is not None:
            self.on_publisher(channel.name, publisher, False)

    async def _ask_keyframes(self, publisher: Publisher) -> None:
        """A comeback: the viewers' decoders need a keyframe of the new encoder as soon as
        media flows (browsers send one first anyway; this covers the rest)."""
        for delay in (0.3, 0.7, 1.0):
            await trio.sleep(delay)
            if publisher.closed:
                return
            publisher.request_keyframe(trio.current_time())

    async def _janitor(self) -> None:
        """Close channels without a publisher for ``linger`` seconds."""
        while True:
            await trio.sleep(JANITOR_INTERVAL)
            now = trio.current_time()
            for channel in list(self.channels.values()):
                if (channel.publisher is None and channel.idle_since is not None
                        and now - channel.idle_since > self.linger):
                    log.info("WHIP: %r had no publisher for %g s; closing it and its %d "
                             "viewer(s)", channel.name, self.linger, len(channel.source.peers))
                    channel.scope.cancel()


def check_name(name: str) -> str:
    """A channel name: 1..128 of ``A-Z a-z 0-9 _ . ~ -`` (ValueError otherwise)."""
    if not 1 <= len(name) <= 128 or not all(c.isascii() and (c.isalnum() or c in "_.~-")
                                             for c in name):
        raise ValueError("a WHIP channel name is 1 to 128 of A-Z, a-z, 0-9, '_', '.', '~', "
                         f"'-' (got {name[:40]!r})")
    return name

