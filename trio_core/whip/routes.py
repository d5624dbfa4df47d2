"""The WHIP routes (RFC 9725), WHEP playback of WHIP channels and ``GET /api/v3/whip``.

Publishing: ``POST /whip/{name}`` with an ``application/sdp`` offer answers ``201`` with the
answer, ``Location: /whip/{name}/{session}`` (a secret id), ``ETag`` and ``Accept-Patch``.
``DELETE`` on the Location ends the publisher (``204``; an unknown session too);
``PATCH`` (``application/trickle-ice-sdpfrag``) is the WHEP contract, from the same code
(:func:`trio_core.webrtc.ice_http.ice_patch`): ``204`` for trickled candidates (the server
is ICE-lite and learns the publisher's address from its checks), an **ICE restart** (new
ufrag/pwd) ``200`` with the server's new ufrag/pwd sdpfrag and a new ``ETag`` — the
publisher keeps its DTLS/SRTP state, its Source and the viewers — ``412`` on an ``If-Match``
that is not the ETag, ``400`` naming what is malformed. ``OPTIONS`` answers CORS preflights
(``Accept-Post: application/sdp``). With ``whip.token`` the POST needs it as
``Authorization: Bearer <token>`` (what OBS and FFmpeg's ``-authorization`` send) or
``?token=<token>`` (401 otherwise); PATCH and DELETE need no credential but the secret
session id. ``webrtc.ice_servers`` go out as ``Link: <url>; rel="ice-server"`` headers on
the ``201`` and on ``OPTIONS`` (RFC 9725 §4.6; with ``whip.token`` only to an OPTIONS that
carries the token: a CORS preflight carries none), as on the WHEP endpoints.

Playing: ``POST /whep/{name}`` — the contract of the per-process WHEP endpoint
(:mod:`trio_core.webrtc.whep`): 201 + answer + ``Location: /whep/{name}/{session}``, 409 (+
``Retry-After``) when nothing is published under the name, 406 no common codec, 503/509
admission limits (the forwarder's ``webrtc.max_*`` and the ``webrtc`` session limits). With
``whip.play_token`` viewers need that token; else they follow the API (a bearer JWT when
``api.auth.enable``), as a process without ``webrtc.token``. ICE restart over PATCH and
``Link`` headers as for processes.

Errors are Core's JSON ``{code, message, details}``: 400 malformed offer, bad name or no
usable codec (the details say which is missing and what was offered), 401, 409 the name has a
live publisher, 413, 415, 503 (+ ``Retry-After``) a publisher limit or the server not running.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import trio

from rtp.errors import NoCommonCodec, Overloaded, SdpError, SourceNotReady
from trio_core.http.auth import Authenticator, unauthorized
from trio_core.http.errors import ApiError, json_response
from trio_core.web import Blueprint, Request, Response, request
from trio_core.webrtc.ice_http import SDPFRAG, etag, ice_patch, read_offer, with_links
from trio_core.webrtc.whep import CORS_HEADERS, RETRY_AFTER, Admission
from trio_core.whip.channels import Busy, WhipChannels, check_name, source_id

if TYPE_CHECKING:
    from rtp.forwarder import Forwarder

__all__ = ["whip_blueprint"]

log = logging.getLogger(__name__)


def _given_token(req: Request) -> str:
    scheme, _, value = req.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return req.args.get("token", "")


def _matches(given: str, token: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def _name(name: str) -> str:
    try:
        return check_name(name)
    except ValueError as exc:
        raise ApiError(400, "Invalid channel name", str(exc)) from None


def whip_blueprint(channels: Callable[[], WhipChannels | None], forwarder: Forwarder,
                   auth: Authenticator, *, token: str = "", play_token: str = "",
                   admission: Admission | None = None,
                   ice_servers: Sequence[Mapping[str, Any]] = (),
                   clock: Callable[[], float] = time.time) -> Blueprint:
    """The routes over the running ``channels`` (None while the subsystem is not running);
    ``ice_servers`` (``webrtc.ice_servers``) are announced in ``Link`` headers."""
    bp = Blueprint("whip", __name__)

    def links(headers: dict[str, str], announce: bool = True) -> Any:
        return with_links(headers, ice_servers, clock) if announce and ice_servers else headers

    def running() -> WhipChannels:
        current = channels()
        if current is None:
            raise ApiError(503, "WHIP server is not running", "retry in a moment",
                           headers={"Retry-After": RETRY_AFTER})
        return current

    def options(methods: str, announce: bool = False, **extra: str) -> Response:
        return Response(b"", status=204, headers=links({
            **CORS_HEADERS, "Access-Control-Allow-Methods": methods, "Allow": methods,
            **extra}, announce))

    # -- publishing --------------------------------------------------------------------------

    @bp.route("/whip/<name>", methods=["OPTIONS"])
    async def whip_options(name: str) -> Response:
        """CORS preflight of the WHIP endpoint (ICE servers for a publisher that may POST)."""
        may = not token or _matches(_given_token(request), token)
        return options("POST, OPTIONS", may, **{"Accept-Post": "application/sdp"})

    @bp.route("/whip/<name>/<session>", methods=["OPTIONS"])
    async def whip_session_options(name: str, session: str) -> Response:
        """CORS preflight of a WHIP session."""
        return options("PATCH, DELETE, OPTIONS",
                       **{"Accept-Patch": SDPFRAG})

    @bp.route("/whip/<name>", methods=["POST"], provide_automatic_options=False)
    @auth.public  # checked here: whip.token
    async def whip_post(name: str) -> Response:
        """Publish over WHIP: SDP offer in, answer out (201, Location)."""
        given = _given_token(request)
        if token and not _matches(given, token):
            raise unauthorized("Missing or invalid token (whip.token as Authorization: "
                               "Bearer <token> or ?token=<token>)")
        name = _name(name)
        offer = await read_offer("WHIP offer")
        try:
            publisher, answer = await running().publish(name, offer,
                                                        client=request.remote_addr or "")
        except SdpError as exc:
            raise ApiError(400, "Unusable SDP offer", str(exc)) from None
        except Busy as exc:
            raise ApiError(409, "Channel is being published", str(exc)) from None
        except Overloaded as exc:
            raise ApiError(503, "Too many WHIP publishers", str(exc),
                           headers={"Retry-After": str(exc.retry_after)}) from None
        except RuntimeError as exc:
            raise ApiError(503, "WHIP server is not running", str(exc),
                           headers={"Retry-After": RETRY_AFTER}) from None
        location = f"/whip/{quote(name, safe='')}/{publisher.id}"
        if token and request.args.get("token"):
            location += "?" + urlencode({"token": request.args["token"]})
        return Response(answer.sdp, status=201, content_type="application/sdp", headers=links({
            **CORS_HEADERS, "Location": location, "ETag": etag(publisher),
            "Accept-Patch": SDPFRAG}))

    @bp.route("/whip/<name>/<session>", methods=["DELETE"], provide_automatic_options=False)
    @auth.public  # the secret session id in the URL is the credential
    async def whip_delete(name: str, session: str) -> Response:
        """End a WHIP publisher (the name is free at once)."""
        current = channels()
        if current is not None:
            current.end(name, session)
        return Response(b"", status=204, headers=CORS_HEADERS)

    @bp.route("/whip/<name>/<session>", methods=["PATCH"], provide_automatic_options=False)
    @auth.public  # the secret session id in the URL is the credential
    async def whip_patch(name: str, session: str) -> Response:
        """Trickle ICE (ignored: ICE-lite) or ICE restart (200 + sdpfrag) of a WHIP session."""
        current = running()
        publisher = current.publisher(name)
        if publisher is None or publisher.id != session:
            raise ApiError(404, "Unknown WHIP session", f"no session {session!r}")
        return await ice_patch(publisher, lambda ufrag: current.restart_ice(publisher, ufrag),
                               CORS_HEADERS)

    # -- playing -----------------------------------------------------------------------------

    def may_play() -> str:
        given = _given_token(request)
        if play_token:
            if _matches(given, play_token):
                return given
            if auth.enabled and auth.bearer_subject(request) is not None:
                return ""
            raise unauthorized("Missing or invalid token (whip.play_token or an API token)")
        if auth.enabled and auth.bearer_subject(request) is None:
            raise unauthorized("Missing or invalid JWT token")
        return ""

    @bp.route("/whep/<name>", methods=["OPTIONS"])
    async def whep_options(name: str) -> Response:
        """CORS preflight of the WHEP endpoint of a WHIP channel."""
        try:
            may_play()
            may = True
        except ApiError:
            may = False
        return options("POST, OPTIONS", may, **{"Accept-Post": "application/sdp"})

    @bp.route("/whep/<name>/<session>", methods=["OPTIONS"])
    async def whep_session_options(name: str, session: str) -> Response:
        """CORS preflight of a WHEP session of a WHIP channel."""
        return options("PATCH, DELETE, OPTIONS", **{"Accept-Patch": SDPFRAG})

    @bp.route("/whep/<name>", methods=["POST"], provide_automatic_options=False)
    @auth.public  # checked here: whip.play_token or the API's credentials
    async def whep_post(name: str) -> Response:
        """Play a WHIP channel over WHEP: SDP offer in, answer out (201, Location)."""
        viewer_token = may_play()
        name = _name(name)
        offer = await read_offer("WHEP offer")
        current = running()
        channel = current.channels.get(name)
        sid = source_id(name)
        if channel is None or sid not in forwarder.sources:
            raise ApiError(409, "Nothing is published under this name",
                           f"no WHIP publisher for {name!r}; retry when it publishes",
                           headers={"Retry-After": RETRY_AFTER})
        if admission is not None:
            admission.admit(request, sid)
        try:
            peer, answer = await forwarder.add_peer(sid, offer, client=request.remote_addr or "")
        except Overloaded as exc:
            raise ApiError(503, "Too many WebRTC sessions", str(exc),
                           headers={"Retry-After": str(exc.retry_after)}) from None
        except NoCommonCodec as exc:
            raise ApiError(406, "No common codec", str(exc)) from None
        except SdpError as exc:
            raise ApiError(400, "Malformed SDP offer", str(exc)) from None
        except (SourceNotReady, KeyError):
            raise ApiError(409, "Nothing is published under this name", "the channel ended",
                           headers={"Retry-After": RETRY_AFTER}) from None
        if admission is not None:
            admission.opened(request, sid, peer)
        if channel.publisher is not None:  # a keyframe soon, for whoever missed the GOP
            channel.publisher.request_keyframe(trio.current_time())
        location = f"/whep/{quote(name, safe='')}/{peer.id}"
        if viewer_token:
            location += "?" + urlencode({"token": viewer_token})
        return Response(answer.sdp, status=201, content_type="application/sdp", headers=links({
            **CORS_HEADERS, "Location": location, "ETag": etag(peer),
            "Accept-Patch": SDPFRAG}))

    @bp.route("/whep/<name>/<session>", methods=["DELETE"], provide_automatic_options=False)
    @auth.public  # the secret session id in the URL is the credential
    async def whep_delete(name: str, session: str) -> Response:
        """End a WHEP viewer of a WHIP channel."""
        source = forwarder.sources.get(source_id(name))
        if source is not None and session in source.peers:
            forwarder.close_peer(session, "deleted by the client (WHEP DELETE)")
        return Response(b"", status=204, headers=CORS_HEADERS)

    @bp.route("/whep/<name>/<session>", methods=["PATCH"], provide_automatic_options=False)
    @auth.public  # the secret session id in the URL is the credential
    async def whep_patch(name: str, session: str) -> Response:
        """Trickle ICE (ignored) or ICE restart (200 + sdpfrag) of a WHEP session of a WHIP
        channel."""
        source = forwarder.sources.get(source_id(name))
        peer = source.peers.get(session) if source is not None else None
        if peer is None:
            raise ApiError(404, "Unknown WHEP session", f"no session {session!r}")
        return await ice_patch(peer, lambda ufrag: forwarder.restart_ice(peer, ufrag),
                               CORS_HEADERS)

    # -- the list ------------------------------------------------------------------------

    @bp.get("/api/v3/whip")
    @auth.require_auth()
    async def list_publishers() -> Response:
        """List the WHIP channels and their publishers."""
        current = channels()
        out = []
        for name, channel in sorted((current.channels if current else {}).items()):
            pub = channel.publisher
            stats = pub.stats() if pub is not None else {}
            out.append({
                "name": name,
                "publishing": pub is not None,
                "remote_address": stats.get("remote_address"),
                "codecs": stats.get("codecs", dict(channel.codecs)),
                "bitrate_kbit": stats.get("bitrate_kbit", 0.0),
                "packets": stats.get("packets", 0),
                "bytes": stats.get("bytes", 0),
                "lost": stats.get("lost", 0),
                "nacks_sent": stats.get("nacks_sent", 0),
                "plis_sent": stats.get("plis_sent", 0),
                "rtx_received": stats.get("rtx_received", 0),
                "since": stats.get("since"),
                "state": stats.get("state", "idle"),
                "dtls_role": stats.get("dtls_role"),
                "transport": stats.get("transport"),
                "ice_restarts": stats.get("ice_restarts", 0),
                "viewers": len(channel.source.peers),
                "publishers": channel.publishers,
            })
        return json_response(out)

    return bp
