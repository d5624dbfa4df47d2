"""WHEP (draft-ietf-wish-whep) endpoints of the API.

``POST /api/v3/process/{id}/whep`` takes an ``application/sdp`` offer and answers ``201``
with the SDP answer, ``Location: /api/v3/process/{id}/whep/{peer_id}`` (a secret session
id) and an ``ETag``. ``DELETE`` on the Location ends the session (``204``, idempotent).
``PATCH`` (``application/trickle-ice-sdpfrag``, RFC 8840) with the session's ufrag trickles
candidates: accepted and ignored with ``204`` (the server is ICE-lite and learns the viewer's
addresses from its connectivity checks). With a *new* ufrag/pwd it is an **ICE restart**:
``200`` with the server's new ufrag/pwd and candidates as an sdpfrag and a new ``ETag``; the
viewer keeps its DTLS/SRTP context, its place in the fan-out and its counters, and media
moves to whatever path its checks with the new credentials nominate. ``If-Match`` must be
``*`` or the session's current ``ETag`` (``412`` otherwise; no ``If-Match`` is accepted, as
most players send none for trickle); the ETag is the server's current ufrag. A malformed
fragment is ``400`` naming the problem.
``OPTIONS`` answers CORS preflights (``Accept-Post: application/sdp``). The PATCH contract,
the ETag and the ``Link`` headers are :mod:`trio_core.webrtc.ice_http`, shared with the WHIP
routes (publishers and the viewers of WHIP channels).

ICE servers (``webrtc.ice_servers``, :mod:`trio_core.webrtc.ice_servers`) go out as
``Link: <url>; rel="ice-server"; username=…; credential=…`` headers on the ``201`` of the
POST and on ``OPTIONS`` of the endpoint from a client that may POST (a CORS preflight
carries no credentials, so a process behind a token announces no TURN credentials to it).

Errors (JSON ``{code, message, details}``): 404 unknown process or WebRTC not enabled on it,
409 (+ ``Retry-After``) process not running / not live yet, 415 wrong content type, 400
malformed SDP (the reason), 406 no offered codec matches, 503 (+ ``Retry-After``) an
admission limit is reached (:mod:`rtp.admission`).

Authentication of the POST: a process with ``webrtc.token`` needs that token
(``Authorization: Bearer <token>`` or ``?token=<token>``) — whether or not API auth is on —
or, when API auth is on, a valid API access token. A process without a token follows the
API (bearer JWT when ``api.auth.enable``). When the viewer token opened the session the
``Location`` carries it as ``?token=`` so a player that PATCHes/DELETEs that URL verbatim
keeps working; PATCH and DELETE themselves need no credentials: the secret session id in
the URL is the credential (and DELETE of an unknown id is a harmless ``204``).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlencode

from werkzeug.datastructures import Headers

from rtp.errors import NoCommonCodec, Overloaded, SdpError, SourceNotReady
from trio_core.http.auth import Authenticator, unauthorized
from trio_core.http.errors import ApiError
from trio_core.web import Blueprint, Request, Response, request
from trio_core.webrtc.ice_http import SDPFRAG, etag, ice_patch, read_offer
from trio_core.webrtc.ice_http import with_links as _with_links

if TYPE_CHECKING:
    from rtp.forwarder import Forwarder
    from rtp.peer import Peer
    from trio_core.engine.supervisor import Supervisor

__all__ = ["Admission", "whep_blueprint"]


class Admission(Protocol):
    """Session accounting and limits of WHEP viewers (the observability subsystem's
    :class:`~trio_core.observability.webrtc_viewers.WebRTCViewers`)."""

    def admit(self, request: Request, process_id: str) -> None:
        """May raise ApiError 509 before anything is allocated."""

    def opened(self, request: Request, process_id: str, peer: Peer) -> None:
        """Told about each new viewer."""

log = logging.getLogger(__name__)

RETRY_AFTER = "2"
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Accept-Patch, Retry-After",
}


def _given_token(req: Request) -> str:
    """The viewer token a request carries: ``Authorization: Bearer`` or ``?token=``."""
    scheme, _, value = req.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return req.args.get("token", "")


def _may_post(supervisor: Supervisor, auth: Authenticator, req: Request,
              process_id: str) -> tuple[bool, str]:
    """Whether ``req`` may open a WHEP session on ``process_id``, and the viewer token it
    used ("" when none). A process with ``webrtc.token`` accepts that token, or (only when
    API auth is on) a valid API access token; ``api.auth`` off never opens a tokened
    process. Without a token the API's rule applies."""
    try:
        token = supervisor.get(process_id).config.webrtc.token
    except KeyError:
        token = ""
    if token:
        given = _given_token(req)
        if given and hmac.compare_digest(given.encode(), token.encode()):
            return True, given
        return auth.enabled and auth.bearer_subject(req) is not None, ""
    return not auth.enabled or auth.bearer_subject(req) is not None, ""


def whep_blueprint(supervisor: Supervisor, forwarder: Forwarder, auth: Authenticator,
                   admission: Admission | None = None,
                   ice_servers: Sequence[Mapping[str, Any]] = (),
                   clock: Callable[[], float] = time.time) -> Blueprint:
    """The WHEP routes over ``supervisor`` (processes) and ``forwarder`` (sessions);
    ``admission`` accounts and limits the viewers (None: no accounting); ``ice_servers``
    (``webrtc.ice_servers``) are announced in ``Link`` headers (TURN REST credentials
    made with ``clock``)."""
    bp = Blueprint("whep", __name__)

    def with_links(headers: Mapping[str, str]) -> Headers:
        return _with_links(headers, ice_servers, clock)

    def webrtc_process(process_id: str) -> None:
        try:
            process = supervisor.get(process_id)
        except KeyError:
            raise ApiError(404, "Unknown process ID", f"no process {process_id!r}") from None
        if not process.config.webrtc.enabled:
            raise ApiError(404, "WebRTC is not enabled for this process",
                           "set webrtc.enabled in the process config")

    @bp.route("/api/v3/process/<process_id>/whep", methods=["OPTIONS"])
    async def whep_options(process_id: str) -> Response:
        headers = {**CORS_HEADERS, "Access-Control-Allow-Methods": "POST, OPTIONS",
                   "Accept-Post": "application/sdp", "Allow": "POST, OPTIONS"}
        if ice_servers and _may_post(supervisor, auth, request, process_id)[0]:
            return Response(b"", status=204, headers=with_links(headers))
        return Response(b"", status=204, headers=headers)

    @bp.route("/api/v3/process/<process_id>/whep/<peer_id>", methods=["OPTIONS"])
    async def session_options(process_id: str, peer_id: str) -> Response:
        return Response(b"", status=204, headers={
            **CORS_HEADERS, "Access-Control-Allow-Methods": "PATCH, DELETE, OPTIONS",
            "Accept-Patch": SDPFRAG,
            "Allow": "PATCH, DELETE, OPTIONS",
        })

    @bp.route("/api/v3/process/<process_id>/whep", methods=["POST"],
              provide_automatic_options=False)
    @auth.public  # checked here: the process's viewer token or the API's credentials
    async def whep_post(process_id: str) -> Response:
        allowed, viewer_token = _may_post(supervisor, auth, request, process_id)
        if not allowed:
            raise unauthorized("Missing or invalid token (webrtc.token or an API access token)")
        webrtc_process(process_id)
        offer = await read_offer()
        if process_id not in forwarder.sources:
            raise ApiError(409, "Process is not running", "start the process, then retry",
                           headers={"Retry-After": RETRY_AFTER})
        sessions = admission
        if sessions is not None:
            sessions.admit(request, process_id)
        try:
            peer, answer = await forwarder.add_peer(process_id, offer,
                                                    client=request.remote_addr or "")
        except Overloaded as exc:
            log.debug("webrtc offer refused source=%s client=%s limit=%s", process_id,
                      request.remote_addr, exc.limit)
            raise ApiError(503, "Too many WebRTC sessions", str(exc),
                           headers={"Retry-After": str(exc.retry_after)}) from None
        except NoCommonCodec as exc:
            raise ApiError(406, "No common codec", str(exc)) from None
        except SdpError as exc:
            raise ApiError(400, "Malformed SDP offer", str(exc)) from None
        except SourceNotReady as exc:
            raise ApiError(409, "Stream is not live yet", str(exc),
                           headers={"Retry-After": RETRY_AFTER}) from None
        except KeyError:
            raise ApiError(409, "Process is not running", "the process stopped",
                           headers={"Retry-After": RETRY_AFTER}) from None
        if sessions is not None:
            sessions.opened(request, process_id, peer)
        location = f"/api/v3/process/{quote(process_id, safe='')}/whep/{peer.id}"
        if viewer_token:  # players PATCH/DELETE the Location verbatim: keep their credential
            location += "?" + urlencode({"token": viewer_token})
        try:
            process = supervisor.get(process_id)
            for warning in answer.warnings:
                process.log(f"webrtc: viewer {peer.id[:8]}: {warning}")
        except KeyError:
            pass
        return Response(answer.sdp, status=201, content_type="application/sdp",
                        headers=with_links({
                            **CORS_HEADERS,
                            "Location": location,
                            "ETag": etag(peer),
                            "Accept-Patch": SDPFRAG,
                        }))

    @bp.route("/api/v3/process/<process_id>/whep/<peer_id>", methods=["DELETE"],
              provide_automatic_options=False)
    @auth.public  # the secret session id in the URL is the credential
    async def whep_delete(process_id: str, peer_id: str) -> Response:
        webrtc_process(process_id)
        source = forwarder.sources.get(process_id)
        if source is not None and peer_id in source.peers:
            forwarder.close_peer(peer_id, "deleted by the client (WHEP DELETE)")
        return Response(b"", status=204, headers=CORS_HEADERS)

    @bp.route("/api/v3/process/<process_id>/whep/<peer_id>", methods=["PATCH"],
              provide_automatic_options=False)
    @auth.public  # the secret session id in the URL is the credential
    async def whep_patch(process_id: str, peer_id: str) -> Response:
        webrtc_process(process_id)
        source = forwarder.sources.get(process_id)
        peer = source.peers.get(peer_id) if source is not None else None
        if peer is None:
            raise ApiError(404, "Unknown WHEP session", f"no session {peer_id!r}")
        return await ice_patch(peer, lambda ufrag: forwarder.restart_ice(peer, ufrag),
                               CORS_HEADERS)

    return bp
