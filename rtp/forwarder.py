"""Forwarder: the façade a server uses — one UDP mux, one certificate, Sources by id.

::

    forwarder = Forwarder(host="127.0.0.1", port=0, advertise=["203.0.113.7"])
    async with trio.open_nursery() as server_nursery:
        await server_nursery.start(forwarder.run)             # binds the mux socket
        # in the nursery of whatever owns the producer (e.g. one process):
        source = await process_nursery.start(forwarder.open_source, "cam1", ("video", "audio"))
        ...  # give source.ports to FFmpeg, source.set_sdp(FFmpeg's -sdp_file)
        peer, answer = await forwarder.add_peer("cam1", offer_sdp)

A Source lives in the caller's nursery (``open_source``); its Peers live in the Source's
own nursery, so cancelling the caller's scope closes the Source, all its Peers and their
sockets. Cancelling :meth:`run` closes the mux socket (Peers then have nowhere to send and
are closed too).
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Sequence

import trio

from relay import RelayStats

from .admission import AdmissionLimits, check_admission
from .dtls import Certificate
from .errors import SourceNotReady
from .mux import UdpMux
from .peer import Peer
from .sdp import Answer, build_answer, parse_offer
from .source import GOP_MAX_BYTES, GOP_MAX_PACKETS, Source

__all__ = ["Forwarder"]


class Forwarder:
    """Relay RTP from Sources to WebRTC Peers over one UDP port.

    Args:
        host: address the UDP mux binds (``0.0.0.0`` for all interfaces).
        port: UDP port of the mux (0 = ephemeral).
        advertise: IPs put in the answers' host candidates (public IP, NAT 1:1 IPs); when
            empty, the bound address (``127.0.0.1`` when bound to all interfaces).
        consent_timeout, setup_timeout: per-Peer timeouts in seconds (``setup_timeout`` is
            how long a viewer may stay pending, i.e. connecting, before it is dropped).
        limits: admission limits for new viewers (:mod:`rtp.admission`); none by default
            (the server passes its configured ones).
        gop_max_bytes, gop_max_packets: bounds of each Source's GOP cache (the server passes
            ``relay.gop_max_bytes`` / ``relay.gop_max_packets``).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0,
                 advertise: Sequence[str] = (), consent_timeout: float = 30.0,
                 setup_timeout: float = 20.0, limits: AdmissionLimits | None = None,
                 gop_max_bytes: int = GOP_MAX_BYTES, gop_max_packets: int = GOP_MAX_PACKETS
                 ) -> None:
        for ip in advertise:
            ipaddress.ip_address(ip)  # ValueError names the bad address
        self.mux = UdpMux(host, port)
        self.advertise = list(advertise)
        self.certificate = Certificate.generate()
        self.sources: dict[str, Source] = {}
        self.consent_timeout = consent_timeout
        self.setup_timeout = setup_timeout
        self.limits = limits if limits is not None else AdmissionLimits.unlimited()
        self.gop_max_bytes = gop_max_bytes
        self.gop_max_packets = gop_max_packets
        self._running = False

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Serve the UDP mux until cancelled; ``task_status.started(port)``."""
        self._running = True
        try:
            await self.mux.run(task_status=task_status)
        finally:
            self._running = False

    @property
    def port(self) -> int:
        """The bound UDP port of the mux (0 before :meth:`run` started)."""
        return self.mux.port

    @property
    def candidates(self) -> list[tuple[str, int]]:
        """The (ip, port) host candidates put into every answer."""
        if self.advertise:
            ips = self.advertise
        elif self.mux.host in ("0.0.0.0", ""):
            ips = ["127.0.0.1"]
        else:
            ips = [self.mux.host]
        return [(ip, self.port) for ip in ips]

    # -- sources -------------------------------------------------------------------------

    def source(self, source_id: str) -> Source:
        """The running Source ``source_id`` (KeyError if none)."""
        return self.sources[source_id]

    async def open_source(self, source_id: str, kinds: Sequence[str] = ("video", "audio"), *,
                          host: str = "127.0.0.1",
                          task_status: trio.TaskStatus[Source] = trio.TASK_STATUS_IGNORED
                          ) -> None:
        """Run a Source registered as ``source_id`` until cancelled.

        Use ``source = await nursery.start(forwarder.open_source, id, kinds)``: the Source's
        sockets are bound (``source.ports``) when it returns. Raises ValueError when the id
        is already open. On exit the Source, its Peers and sockets are closed and it is
        unregistered.
        """
        if source_id in self.sources:
            raise ValueError(f"source {source_id!r} is already open")
        source = Source(source_id, kinds, host=host, gop_max_bytes=self.gop_max_bytes,
                        gop_max_packets=self.gop_max_packets)
        self.sources[source_id] = source
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(source.run)
                task_status.started(source)
        finally:
            if self.sources.get(source_id) is source:
                del self.sources[source_id]

    def relay_stats(self) -> RelayStats:
        """The relay's state for the ``relay_*`` metrics: open viewers and the bytes in the
        Sources' GOP caches (WebRTC has no reader queue: viewers are sent to directly)."""
        readers = gop = 0
        for source in list(self.sources.values()):
            readers += len(source.peers)
            gop += sum(st.gop_cache.bytes for st in source.state.values())
        return RelayStats(readers=readers, gop_bytes=gop)

    # -- peers ---------------------------------------------------------------------------

    def admit(self, source_id: str, client: str = "") -> None:
        """Raise :class:`~rtp.errors.Overloaded` when one more viewer of ``source_id`` from
        ``client`` (IP address) would exceed :attr:`limits`; allocates nothing."""
        check_admission(self.limits, {sid: s.peers.values() for sid, s in self.sources.items()},
                        source_id, client)

    async def add_peer(self, source_id: str, offer_sdp: str, *, ready_timeout: float = 5.0,
                       client: str = "") -> tuple[Peer, Answer]:
        """Negotiate a new viewer of ``source_id`` (from IP address ``client``) from its offer.

        Raises Overloaded (an admission limit is reached: nothing was allocated),
        KeyError (no such source), SdpError (malformed offer, message says why),
        NoCommonCodec (nothing offered can carry the source), SourceNotReady (the producer
        has not described its codecs within ``ready_timeout`` seconds), RuntimeError (the
        mux is not running).
        """
        source = self.source(source_id)
        self.admit(source_id, client)
        offer = parse_offer(offer_sdp)
        if not self._running or self.port == 0:
            raise RuntimeError("the WebRTC UDP mux is not running")
        if not await source.wait_ready(ready_timeout):
            raise SourceNotReady(f"source {source_id!r} has no media description yet")
        if source.closed:
            raise KeyError(source_id)
        self.admit(source_id, client)  # again: other offers may have been admitted meanwhile
        ice_ufrag = secrets.token_hex(4)
        ice_pwd = secrets.token_hex(16)
        cname = secrets.token_hex(8)
        answer = build_answer(
            offer,
            ice_ufrag=ice_ufrag,
            ice_pwd=ice_pwd,
            fingerprint=self.certificate.fingerprint,
            candidates=self.candidates,
            tracks=source.tracks,
            cname=cname,
        )
        peer = Peer(
            peer_id=secrets.token_urlsafe(16),
            source=source,
            mux=self.mux,
            certificate=self.certificate,
            remote_fingerprint=offer.fingerprint,
            ice_ufrag=ice_ufrag,
            ice_pwd=ice_pwd,
            remote_ufrag=offer.ice_ufrag,
            tracks=answer.tracks,
            cname=cname,
            consent_timeout=self.consent_timeout,
            setup_timeout=self.setup_timeout,
            client=client,
        )
        self.mux.register(peer)
        try:
            source.attach(peer)
        except BaseException:
            self.mux.unregister(peer)
            raise
        return peer, answer

    def peer(self, peer_id: str) -> Peer | None:
        """The open Peer ``peer_id`` or None."""
        for source in self.sources.values():
            peer = source.peers.get(peer_id)
            if peer is not None:
                return peer
        return None

    def close_peer(self, peer_id: str, reason: str = "closed by the server") -> bool:
        """Close a viewer. Idempotent: False when no such open Peer."""
        peer = self.peer(peer_id)
        if peer is None:
            return False
        peer.close(reason)
        return True
