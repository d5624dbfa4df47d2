"""The edge relay (``cluster.relay``): viewers of a process another node runs are served here.

Without the relay, ``POST /api/v3/process/{id}/whep`` on a node that does not run the process
answers 307 to the owner. With it, this node becomes an **edge** for that process: it pulls
the process's media from the owner **once** — one upstream WHEP session per process per edge
(:class:`rtp.upstream.UpstreamSession`: a WHEP client of the owner's
``POST /api/v3/process/{id}/whep``, ICE as the controlling agent, DTLS client, SRTP) — into a
local :class:`~rtp.source.Source` (``relay:<id>``, ``sockets=False``, with its GOP cache) and
answers its own viewers from that Source through the forwarder's ordinary Peers and fan-out.
The owner sees the edge as one ordinary viewer. Viewers' PLI/NACK go upstream through
``Source.upstream`` (one PLI per 0.5 s, repairs once per packet per 0.1 s, as for WHIP).

Lifetime of one relayed process (:class:`RelayEntry`): opened by the first viewer's offer;
the upstream session is re-established when it ends (owner restarted the process, consent
lost) or when the lease holder changes (failover, rebalance: the viewers stay on the same
Source, which hides the new SSRC/sequence/timestamps; a PLI asks the new owner for a
keyframe); it ends :data:`LINGER` s after its last viewer left, when this node becomes the
owner itself (its viewers are closed: they re-POST and get the local process), or when the
process is deleted. :meth:`EdgeRelay.run` owns every entry: cancelling it ends every upstream
session (DTLS close_notify, then a best-effort WHEP ``DELETE`` to the owner) and every relay
Source with its viewers.

Credentials toward the owner: the process's ``webrtc.token`` (from the shared store) when it
has one, else the first viewer's own ``Authorization`` header (API auth).
"""

from __future__ import annotations

import functools
import hmac
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urljoin

import trio

from rtp.errors import NoCommonCodec, Overloaded, SdpError, SourceNotReady
from trio_core.http.errors import ApiError
from trio_core.web import Request, Response

if TYPE_CHECKING:
    from rtp.forwarder import Forwarder
    from rtp.source import Source
    from rtp.upstream import UpstreamSession
    from trio_core.cluster.node import ClusterNode
    from trio_core.http.auth import Authenticator
    from trio_core.webrtc.whep import Admission

__all__ = ["EdgeRelay", "RelayEntry", "source_id"]

log = logging.getLogger(__name__)

LINGER = 5.0
TICK = 0.25
RETRY = 1.0
HTTP_TIMEOUT = 5.0
READY_TIMEOUT = 8.0
KINDS = ("video", "audio")
MAX_OFFER_BYTES = 64 * 1024
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Accept-Patch, Retry-After",
}


def source_id(process_id: str) -> str:
    """The forwarder's Source id of the relay of ``process_id``."""
    return f"relay:{process_id}"


@dataclass(eq=False)
class RelayEntry:
    process_id: str
    headers: dict[str, str]
    source: Source | None = None
    upstream: UpstreamSession | None = None
    owner: str | None = None
    location: str | None = None  # the owner's WHEP session URL (for DELETE)
    pending: int = 0  # viewer offers being answered
    idle_since: float | None = None
    error: str = ""
    upstreams: int = 0  # upstream sessions opened so far
    ready: trio.Event = field(default_factory=trio.Event)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


class EdgeRelay:
    """The relays of one node (see the module docstring)."""

    def __init__(self, node: ClusterNode, forwarder: Forwarder, auth: Authenticator,
                 admission: Admission | None = None, *, linger: float = LINGER) -> None:
        self.node = node
        self.forwarder = forwarder
        self.auth = auth
        self.admission = admission
        self.linger = linger
        self.entries: dict[str, RelayEntry] = {}
        self._nursery: trio.Nursery | None = None

    @property
    def sessions(self) -> int:
        """Upstream sessions open now (``cluster_relay_sessions``)."""
        return sum(1 for e in self.entries.values()
                   if e.upstream is not None and not e.upstream.closed)

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self._nursery = None

    # -- owner and process facts -------------------------------------------------------------

    def owner(self, process_id: str) -> tuple[str, str] | None:
        """(node id, API address) of the node running ``process_id`` if not this one."""
        holder = self.node.holders.get(process_id)
        if holder is None or holder[0] == self.node.id:
            return None
        doc = self.node.live_nodes.get(holder[0])
        if doc is None or not doc.get("address"):
            return None
        return holder[0], str(doc["address"])

    def _webrtc(self, process_id: str) -> dict[str, Any] | None:
        record = self.node._records_cache.get(process_id)
        if record is None:
            return None
        webrtc = (record.get("config") or {}).get("webrtc") or {}
        return webrtc if isinstance(webrtc, dict) else {}

    def relays(self, process_id: str) -> bool:
        """Whether a WHEP POST for ``process_id`` is this relay's to answer."""
        return process_id not in self.node.book.held and self.owner(process_id) is not None

    # -- HTTP (called from the cluster's before_request hook) ------------------------------

    async def whep_post(self, request: Request, process_id: str) -> Response:
        webrtc = self._webrtc(process_id)
        if webrtc is None:
            raise ApiError(404, "Unknown process ID", f"no process {process_id!r}")
        token = str(webrtc.get("token") or "")
        given = _given_token(request)
        if token:
            ok = bool(given) and hmac.compare_digest(given.encode(), token.encode())
            ok = ok or (self.auth.enabled and self.auth.bearer_subject(request) is not None)
        else:
            ok = not self.auth.enabled or self.auth.bearer_subject(request) is not None
        if not ok:
            raise ApiError(401, "Unauthorized",
                           "Missing or invalid token (webrtc.token or an API access token)")
        if not webrtc.get("enabled"):
            raise ApiError(404, "WebRTC is not enabled for this process",
                           "set webrtc.enabled in the process config")
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/sdp":
            raise ApiError(415, "Unsupported Media Type",
                           f"the offer must be application/sdp, not {ctype or 'missing'!r}")
        body = await request.get_data()
        if len(body) > MAX_OFFER_BYTES:
            raise ApiError(413, "Offer too large", f"more than {MAX_OFFER_BYTES} bytes")
        try:
            offer = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "Malformed SDP offer", "the offer is not UTF-8") from None
        if self._nursery is None or not self.forwarder.running:
            raise ApiError(503, "Edge relay not running", "the WebRTC forwarder is not running",
                           headers={"Retry-After": "2"})
        upstream_headers = {"Authorization": f"Bearer {token}"} if token else (
            {"Authorization": request.headers["Authorization"]}
            if "Authorization" in request.headers else {})
        entry = self.entries.get(process_id)
        if entry is None:
            entry = self.entries[process_id] = RelayEntry(process_id, upstream_headers)
            self._nursery.start_soon(self._serve, entry)
        entry.pending += 1
        try:
            with trio.move_on_after(READY_TIMEOUT):
                await entry.ready.wait()
            source = entry.source
            if source is None or not source.ready or source.closed:
                raise ApiError(502, "Edge relay: the owner did not serve the process",
                               entry.error or "no upstream session yet",
                               headers={"Retry-After": "2"})
            if self.admission is not None:
                self.admission.admit(request, process_id)
            try:
                peer, answer = await self.forwarder.add_peer(
                    source.id, offer, client=request.remote_addr or "")
            except Overloaded as exc:
                raise ApiError(503, "Too many WebRTC sessions", str(exc),
                               headers={"Retry-After": str(exc.retry_after)}) from None
            except NoCommonCodec as exc:
                raise ApiError(406, "No common codec", str(exc)) from None
            except SdpError as exc:
                raise ApiError(400, "Malformed SDP offer", str(exc)) from None
            except (SourceNotReady, KeyError) as exc:
                raise ApiError(409, "Stream is not live yet", str(exc),
                               headers={"Retry-After": "2"}) from None
            if self.admission is not None:
                self.admission.opened(request, process_id, peer)
        finally:
            entry.pending -= 1
        location = f"/api/v3/process/{quote(process_id, safe='')}/whep/{peer.id}"
        if token and given:
            location += "?" + urlencode({"token": given})
        from trio_core.webrtc.ice_http import SDPFRAG, etag
        return Response(answer.sdp, status=201, content_type="application/sdp",
                        headers={**CORS, "Location": location, "ETag": etag(peer),
                                 "Accept-Patch": SDPFRAG})

    def viewer(self, process_id: str, peer_id: str) -> Any:
        """An edge viewer of ``process_id`` (for PATCH/DELETE), or None."""
        entry = self.entries.get(process_id)
        if entry is None or entry.source is None:
            return None
        return entry.source.peers.get(peer_id)

    async def whep_session(self, request: Request, process_id: str, peer_id: str) -> Response:
        """PATCH (trickle / ICE restart) or DELETE of an edge viewer's session."""
        peer = self.viewer(process_id, peer_id)
        if request.method == "DELETE":
            if peer is not None:
                self.forwarder.close_peer(peer_id, "deleted by the client (WHEP DELETE)")
            return Response(b"", status=204, headers=CORS)
        if peer is None:
            raise ApiError(404, "Unknown WHEP session", f"no session {peer_id!r}")
        from trio_core.webrtc.ice_http import ice_patch
        return await ice_patch(peer, lambda ufrag: self.forwarder.restart_ice(peer, ufrag), CORS)

    # -- one relayed process -------------------------------------------------------------

    async def _serve(self, entry: RelayEntry) -> None:
        pid = entry.process_id
        try:
            with entry.scope:
                async with trio.open_nursery() as nursery:
                    try:
                        entry.source = await nursery.start(functools.partial(
                            self.forwarder.open_source, source_id(pid), KINDS, sockets=False))
                    except (ValueError, RuntimeError) as exc:
                        entry.error = f"cannot open the relay source: {exc}"
                        log.warning("edge relay %r: %s", pid, entry.error)
                        return
                    entry.source.upstream = None
                    reason = await self._follow(entry, nursery)
                    await self._end_upstream(entry, reason)
                    nursery.cancel_scope.cancel()
        finally:
            if self.entries.get(pid) is entry:
                del self.entries[pid]
            entry.ready.set()
            with trio.CancelScope(shield=True):
                await self._end_upstream(entry, "relay ended")
            log.info("edge relay %r ended (%d upstream session(s))", pid, entry.upstreams)

    async def _follow(self, entry: RelayEntry, nursery: trio.Nursery) -> str:
        """Keep one upstream session to the current owner while the relay has viewers;
        return why it ended."""
        pid = entry.process_id
        source = entry.source
        assert source is not None
        retry_at = 0.0
        while True:
            now = trio.current_time()
            if source.closed:
                return "the relay source closed"
            if source.peers or entry.pending:
                entry.idle_since = None
            elif entry.idle_since is None:
                entry.idle_since = now
            elif now - entry.idle_since > self.linger:
                log.info("edge relay %r: no viewer for %g s; ending the upstream session",
                         pid, self.linger)
                return "no viewers"
            if pid not in self.node._records_cache or pid in self.node.book.held:
                why = "this node runs the process now" if pid in self.node.book.held else (
                    "the process was deleted")
                log.info("edge relay %r: %s; closing its %d viewer(s)", pid, why,
                         len(source.peers))
                return why
            owner = self.owner(pid)
            up = entry.upstream
            if up is not None and (up.closed or (owner is not None and owner[0] != entry.owner)):
                reason = up.close_reason if up.closed else f"the owner is now {owner[0]}"  # type: ignore[index]
                await self._end_upstream(entry, f"re-establishing: {reason}")
                up = None
            if up is None and owner is not None and now >= retry_at:
                try:
                    await self._connect(entry, owner, nursery)
                except _UpstreamFailed as exc:
                    entry.error = str(exc)
                    log.warning("edge relay %r: %s", pid, exc)
                    retry_at = trio.current_time() + RETRY
            await trio.sleep(TICK)

    async def _connect(self, entry: RelayEntry, owner: tuple[str, str],
                       nursery: trio.Nursery) -> None:
        import httpx

        from rtp.upstream import UpstreamSession, build_whep_offer, parse_whep_answer
        from rtp.whip_sdp import source_tracks

        source = entry.source
        assert source is not None
        ufrag, pwd = secrets.token_hex(4), secrets.token_hex(16)
        offer = build_whep_offer(ice_ufrag=ufrag, ice_pwd=pwd,
                                 fingerprint=self.forwarder.certificate.fingerprint)
        url = f"{owner[1].rstrip('/')}/api/v3/process/{quote(entry.process_id, safe='')}/whep"
        try:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False) as client:
                resp = await client.post(url, content=offer.encode(), headers={
                    "Content-Type": "application/sdp", **entry.headers})
        except httpx.HTTPError as exc:
            raise _UpstreamFailed(f"owner {owner[0]} at {owner[1]}: {exc!r}") from None
        if resp.status_code != 201:
            raise _UpstreamFailed(f"owner {owner[0]} answered {resp.status_code}: "
                                  f"{resp.text[:200]}")
        location = urljoin(url, resp.headers.get("Location", ""))
        try:
            answer = parse_whep_answer(resp.text)
        except SdpError as exc:
            await _delete(location)
            raise _UpstreamFailed(f"owner {owner[0]}'s answer: {exc}") from None
        described = source_tracks(answer.tracks)
        changed = [k for k, t in described.items() if k in source.tracks
                   and source.tracks[k].codec.rtpmap() != t.codec.rtpmap()]
        if changed and source.peers:  # they cannot decode the new codec: let them re-offer
            log.info("edge relay %r: the owner now sends other codecs (%s); closing %d "
                     "viewer(s)", entry.process_id, ", ".join(changed), len(source.peers))
            for peer_id in list(source.peers):
                self.forwarder.close_peer(peer_id, "the relayed process changed its codec")
        for kind in described:
            source.state[kind].sprop = []
        source.set_tracks({**source.tracks, **described})
        session = UpstreamSession(
            session_id=secrets.token_urlsafe(16), source=source, mux=self.forwarder.mux,
            certificate=self.forwarder.certificate, remote_fingerprint=answer.fingerprint,
            ice_ufrag=ufrag, ice_pwd=pwd, remote_ufrag=answer.ice_ufrag,
            remote_pwd=answer.ice_pwd, remote_addr=answer.candidate, tracks=answer.tracks,
            consent_timeout=min(30.0, self.forwarder.consent_timeout), setup_timeout=10.0,
            media_timeout=10.0, client=owner[0])
        entry.upstream, entry.owner, entry.location = session, owner[0], location
        entry.upstreams += 1
        entry.error = ""
        source.upstream = session
        nursery.start_soon(session.run)
        if entry.upstreams > 1:
            nursery.start_soon(_ask_keyframes, session)
        entry.ready.set()
        log.info("edge relay %r: upstream session %d to %s (%s)", entry.process_id,
                 entry.upstreams, owner[0], owner[1])

    async def _end_upstream(self, entry: RelayEntry, reason: str) -> None:
        up, location = entry.upstream, entry.location
        entry.upstream = entry.location = None
        if up is not None:
            up.close(reason)
        if location:
            if self._nursery is not None:  # a dead owner must not stall the relay
                self._nursery.start_soon(_delete, location)
            else:
                await _delete(location)


class _UpstreamFailed(Exception):
    pass


async def _delete(url: str) -> None:
    """Best-effort WHEP DELETE of an upstream session at the owner."""
    import httpx
    with trio.move_on_after(2.0):
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                await client.delete(url)
        except httpx.HTTPError:
            pass


async def _ask_keyframes(session: UpstreamSession) -> None:
    """A new upstream (failover): the viewers' decoders need a keyframe of the new owner."""
    for delay in (0.3, 0.7, 1.0):
        await trio.sleep(delay)
        if session.closed:
            return
        session.request_keyframe(trio.current_time())


def _given_token(req: Request) -> str:
    scheme, _, value = req.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return req.args.get("token", "")
