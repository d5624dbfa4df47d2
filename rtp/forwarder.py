"""Forwarder: the façade a server uses — one UDP mux, one certificate, Sources by id.

::

    forwarder = Forwarder(host="127.0.0.1", port=0, advertise=["203.0.113.7"])
    async with trio.open_nursery() as server_nursery:
        await server_nursery.start(forwarder.run)             # binds the mux socket
        # in the nursery of whatever owns the producer (e.g. one process):
        source = await process_nursery.start(forwarder.open_source, "cam1", ("video", "audio"))
        ...  # give source.ports to FFmpeg, source.set_sdp(FFmpeg's -sdp_file)
        peer, answer = await forwarder.add_peer("cam1", offer_sdp)

Ownership: :meth:`run` owns a nursery holding the mux and every Source (each Source's Peers
live in the Source's own nursery). :meth:`open_source` is the *lease* a producer's owner
holds in its own nursery: the Source exists while the lease runs, and when the lease ends
(the caller's scope is cancelled) the Source, its Peers and sockets are closed before
``open_source`` returns. Cancelling :meth:`run` closes everything (each Peer says goodbye
while the mux socket is still open).

The native fan-out (``rtp.fanout``): the first Source makes one engine with ``fanout_workers``
threads (None: the CPUs this process may use; 1: no thread) shared by every Source (each
track a table, each viewer a C viewer owned by one worker), and closes it — every thread
joined — when :meth:`run` ends, after every Source and Peer has closed (also on
cancellation).

Holding Sources (a server reload): between :meth:`hold` and :meth:`resume`, a lease that
ends leaves its Source running — producer sockets, GOP cache and every Peer with its
DTLS/SRTP state — and the next :meth:`open_source` of the same id and tracks takes it back
(same ports, so the new producer continues it as after a producer restart and the viewers
never notice). :meth:`resume` gives held Sources ``reclaim_timeout`` seconds to be taken
back; then they close (their viewers are told). :meth:`end_held` closes them at once.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from relay import RelayStats
from relay.gop import GOP_MAX_BYTES, GOP_MAX_PACKETS

from .admission import AdmissionLimits, check_admission
from .errors import SourceNotReady
from .mux import UdpMux
from .sdp import Answer, build_answer, build_restart_sdpfrag, parse_offer
from .tcp import TcpLimits, TcpListener

if TYPE_CHECKING:  # imported on first use (idle memory): Source (SRTP fan-out) with the first
    # Source, DTLS (pyOpenSSL, cryptography) and ICE with the first viewer
    from .dtls import Certificate
    from .peer import Peer
    from .source import Source

__all__ = ["Forwarder"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Running:
    """A Source running in the forwarder's nursery."""

    source: Source
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)
    error: BaseException | None = None
    started: bool = False
    #: trio time until which a held Source waits to be taken back (None: no limit yet)
    reclaim_by: float | None = None


class _Started:
    """A ``task_status`` that notes that the Source reported ready."""

    def __init__(self, entry: _Running, status: trio.TaskStatus[Any]) -> None:
        self.entry = entry
        self.status = status

    def started(self, value: Any = None) -> None:
        self.entry.started = True
        self.status.started(value)


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
        tcp_host, tcp_port: the ICE-TCP port (:mod:`rtp.tcp`; ``tcp_host`` None = off, ``""``
            = all interfaces); its passive candidates use the same IPs as the UDP ones.
        tcp_limits: connection limits of the ICE-TCP port.
        fanout_workers: native fan-out threads (``webrtc.fanout_workers``; None or 0: the
            CPUs this process may use, 1: none, everything on the trio thread).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0,
                 advertise: Sequence[str] = (), consent_timeout: float = 30.0,
                 setup_timeout: float = 20.0, limits: AdmissionLimits | None = None,
                 gop_max_bytes: int = GOP_MAX_BYTES, gop_max_packets: int = GOP_MAX_PACKETS,
                 tcp_host: str | None = None, tcp_port: int = 0,
                 tcp_limits: TcpLimits | None = None,
                 fanout_workers: int | None = None) -> None:
        for ip in advertise:
            ipaddress.ip_address(ip)  # ValueError names the bad address
        self.mux = UdpMux(host, port)
        #: the ICE-TCP listener (None when ICE-TCP is off); served in :meth:`run`'s nursery
        self.tcp: TcpListener | None = None
        if tcp_host is not None:
            self.tcp = TcpListener(tcp_host, tcp_port, self.mux.peer_for_ufrag,  # type: ignore[arg-type]
                                   tcp_limits, before_close=self.mux.close_peers)
        self.advertise = list(advertise)
        self._certificate: Certificate | None = None
        self.sources: dict[str, Source] = {}
        self.consent_timeout = consent_timeout
        self.setup_timeout = setup_timeout
        self.limits = limits if limits is not None else AdmissionLimits.unlimited()
        self.gop_max_bytes = gop_max_bytes
        self.gop_max_packets = gop_max_packets
        self._running = False
        self._nursery: trio.Nursery | None = None
        #: Sources whose lease ended while holding, by id (see :meth:`hold`)
        self.held: dict[str, _Running] = {}
        #: True between :meth:`hold` and :meth:`resume` / :meth:`end_held`
        self.holding = False
        self._expiry: trio.CancelScope | None = None
        if fanout_workers is not None and fanout_workers < 0:
            raise ValueError(f"fanout_workers must be >= 0, not {fanout_workers}")
        self.fanout_workers = fanout_workers
        #: the native fan-out engine while :meth:`run` serves (None without the C fan-out)
        self.engine: Any = None

    @property
    def certificate(self) -> Certificate:
        """Our DTLS certificate (its fingerprint is in every answer), generated on first use:
        a forwarder without viewers never loads the DTLS stack (memory of an idle server)."""
        if self._certificate is None:
            from .dtls import Certificate

            self._certificate = Certificate.generate()
        return self._certificate

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Serve the UDP mux and the Sources until cancelled; ``task_status.started(port)``.

        On cancellation every Source and Peer is closed (Peers say goodbye first), then the
        mux socket."""
        try:
            async with trio.open_nursery() as nursery:
                port = await nursery.start(self.mux.run)
                if self.tcp is not None:
                    await nursery.start(self.tcp.run)
                self._nursery = nursery
                self._running = True
                task_status.started(port)
        finally:
            self._running = False
            self._nursery = None
            engine, self.engine = self.engine, None
            if engine is not None:  # every Source and Peer is closed: the last holder of
                from .fanout import release_engine  # the shared pool joins its threads

                release_engine(engine)

    @property
    def running(self) -> bool:
        """True while :meth:`run` serves."""
        return self._running

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

    @property
    def tcp_candidates(self) -> list[tuple[str, int]]:
        """The (ip, port) ICE-TCP passive candidates (none when ICE-TCP is off): the UDP
        candidates' IPs with the TCP port."""
        if self.tcp is None or not self.tcp.port:
            return []
        return [(ip, self.tcp.port) for ip, _ in self.candidates]

    # -- sources -------------------------------------------------------------------------

    def source(self, source_id: str) -> Source:
        """The running Source ``source_id`` (KeyError if none)."""
        return self.sources[source_id]

    async def open_source(self, source_id: str, kinds: Sequence[str] = ("video", "audio"), *,
                          host: str = "127.0.0.1", sockets: bool = True,
                          task_status: trio.TaskStatus[Source] = trio.TASK_STATUS_IGNORED
                          ) -> None:
        """Hold the lease of Source ``source_id`` until cancelled (see the module docstring).

        Use ``source = await nursery.start(forwarder.open_source, id, kinds)``: the Source's
        sockets are bound (``source.ports``) when it returns. A held Source with this id and
        these ``kinds`` is taken back (the same ports and viewers); a held one with other
        tracks is closed first. Raises ValueError when the id is already leased,
        RuntimeError when the forwarder is not running; an error of the Source is raised
        here. When the lease ends, the Source is closed before this returns — unless the
        forwarder is holding (:meth:`hold`), then it keeps running until taken back or expired.
        ``sockets=False``: the Source binds no producer sockets; its feeder calls
        ``source.on_datagram`` (WHIP ingest).
        """
        if self._nursery is None:
            raise RuntimeError("the WebRTC forwarder is not running")
        entry = self.held.pop(source_id, None)
        if entry is not None and (entry.source.kinds != tuple(kinds)
                                  or entry.source.host != host or entry.done.is_set()):
            await self._end(entry)  # other tracks: its viewers cannot continue
            entry = None
        if entry is not None:
            entry.reclaim_by = None
            log.info("WebRTC: source %r taken back with its %d viewer(s)", source_id,
                     len(entry.source.peers))
        else:
            if source_id in self.sources:
                raise ValueError(f"source {source_id!r} is already open")
            from .source import Source

            if self.engine is None:  # with the first Source (idle memory), closed by run()
                from .fanout import acquire_engine

                self.engine = acquire_engine(self.fanout_workers)
            source = Source(source_id, kinds, host=host, gop_max_bytes=self.gop_max_bytes,
                            gop_max_packets=self.gop_max_packets, sockets=sockets,
                            engine=self.engine)
            entry = _Running(source)
            self.sources[source_id] = source
            try:
                await self._nursery.start(self._serve, entry)
            except BaseException:
                self._forget(entry)
                raise
        try:
            task_status.started(entry.source)
            await entry.done.wait()  # the Source ended by itself: an error
            if entry.error is not None:
                raise entry.error
        finally:
            if not entry.done.is_set():
                if self.holding and self._running:
                    self.held[source_id] = entry  # a reload: the next lease takes it back
                else:
                    with trio.CancelScope(shield=True):
                        await self._end(entry)

    async def _serve(self, entry: _Running, *,
                     task_status: trio.TaskStatus[dict[str, int]] = trio.TASK_STATUS_IGNORED
                     ) -> None:
        """Run one Source in the forwarder's nursery; its error goes to its lease."""
        try:
            with entry.scope:
                await entry.source.run(task_status=_Started(entry, task_status))  # type: ignore[arg-type]
        except Exception as exc:
            if not entry.started:
                raise
            entry.error = exc
        finally:
            self._forget(entry)
            entry.done.set()

    def _forget(self, entry: _Running) -> None:
        sid = entry.source.id
        if self.sources.get(sid) is entry.source:
            del self.sources[sid]
        if self.held.get(sid) is entry:
            del self.held[sid]

    @staticmethod
    async def _end(entry: _Running) -> None:
        """Close one Source (its Peers say goodbye) and wait until it is gone (a moment:
        its cleanup is synchronous)."""
        entry.scope.cancel()
        await entry.done.wait()

    # -- holding across a server reload ------------------------------------------------------

    def hold(self) -> None:
        """From now on a lease that ends leaves its Source (and viewers) running, held for
        the next lease of the same id (a server reload stops every process)."""
        self.holding = True

    def resume(self, reclaim_timeout: float) -> None:
        """Stop holding; Sources held so far close unless taken back within
        ``reclaim_timeout`` seconds (their viewers are then told)."""
        self.holding = False
        if not self.held or self._nursery is None:
            return
        deadline = trio.current_time() + reclaim_timeout
        for entry in self.held.values():
            if entry.reclaim_by is None:
                entry.reclaim_by = deadline
        if self._expiry is None:
            self._nursery.start_soon(self._expire_held)

    async def _expire_held(self) -> None:
        with trio.CancelScope() as self._expiry:
            try:
                while self.held:
                    now = trio.current_time()
                    due = [e for e in self.held.values()
                           if e.reclaim_by is not None and e.reclaim_by <= now]
                    for entry in due:
                        log.info("WebRTC: source %r was not taken back; closing it and its "
                                 "%d viewer(s)", entry.source.id, len(entry.source.peers))
                        self.held.pop(entry.source.id, None)
                        await self._end(entry)
                    waits = [e.reclaim_by for e in self.held.values() if e.reclaim_by is not None]
                    if not waits:
                        return
                    await trio.sleep_until(min(waits))
            finally:
                self._expiry = None

    async def end_held(self) -> None:
        """Close every held Source now (its viewers are told) and stop holding."""
        self.holding = False
        for entry in list(self.held.values()):
            self.held.pop(entry.source.id, None)
            await self._end(entry)

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
        from .peer import Peer

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
            tcp_candidates=self.tcp_candidates,
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

    def restart_ice(self, peer: Peer, remote_ufrag: str) -> str:
        """ICE restart of ``peer`` (WHEP PATCH): its new local credentials are registered
        and returned as the sdpfrag to answer with (ufrag, pwd, candidates)."""
        ufrag, pwd = peer.restart_ice(remote_ufrag)
        tracks = sorted(peer.negotiated.values(), key=lambda t: t.mid)
        mids = [t.mid for t in tracks]
        kinds = [t.kind for t in tracks]
        return build_restart_sdpfrag(ice_ufrag=ufrag, ice_pwd=pwd, mids=mids,
                                     kinds=[k if k in ("audio", "video") else "video"
                                            for k in kinds],
                                     candidates=self.candidates,
                                     tcp_candidates=self.tcp_candidates)

    def close_peer(self, peer_id: str, reason: str = "closed by the server") -> bool:
        """Close a viewer. Idempotent: False when no such open Peer."""
        peer = self.peer(peer_id)
        if peer is None:
            return False
        peer.close(reason)
        return True
