"""The ICE part of the WHEP and WHIP HTTP contracts, shared by both: ``Link`` headers,
the resource's ``ETag`` and ``PATCH`` (trickle / ICE restart).

One implementation for every WebRTC resource the server has — WHEP viewers of processes
(:mod:`trio_core.webrtc.whep`), WHIP publishers and WHEP viewers of WHIP channels
(:mod:`trio_core.whip.routes`):

* :func:`with_links`: ``webrtc.ice_servers`` as ``Link: <url>; rel="ice-server"; …``
  headers (:func:`trio_core.webrtc.ice_servers.link_headers`, TURN REST credentials made
  now), for the ``201`` of a POST and for ``OPTIONS`` (RFC 9725 §4.6, draft-ietf-wish-whep).
* :func:`etag`: the resource's entity tag, the server's current ICE ufrag (it changes with
  every ICE restart).
* :func:`ice_patch`: a ``PATCH`` (``application/trickle-ice-sdpfrag``, RFC 8840) on a
  session whose ICE agent is ``session.ice`` (:class:`rtp.stun.IceLite`): ``415`` another
  content type; ``412`` an ``If-Match`` that is neither ``*`` nor the current ETag (none is
  accepted: most clients send none for trickle); ``413`` a body over
  :data:`rtp.sdp.MAX_SDPFRAG_BYTES`; ``400`` a malformed fragment (the message names the
  problem) or a new ufrag without its pwd; ``204`` trickled candidates (not needed: the
  server is ICE-lite and learns addresses from the checks); a *new* ufrag/pwd is an **ICE
  restart**: ``restart(new_remote_ufrag)`` swaps the session's local credentials and
  returns the server's sdpfrag, answered ``200`` with the new ``ETag``.

Stateless functions over the request being served; nothing here blocks but reading the body.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from werkzeug.datastructures import Headers

from rtp.errors import SdpError
from rtp.sdp import MAX_SDPFRAG_BYTES, parse_sdpfrag
from trio_core.http.errors import ApiError
from trio_core.web import Response, request
from trio_core.webrtc.ice_servers import link_headers

#: the largest SDP offer a WHEP or WHIP POST may carry
MAX_OFFER_BYTES = 64 * 1024


async def read_offer(what: str = "offer") -> str:
    """The SDP offer of the current POST (WHEP or WHIP) as text: 415 when it is not
    ``application/sdp``, 413 over :data:`MAX_OFFER_BYTES`, 400 when it is not UTF-8 — each
    naming the problem (``what``: how the message names the offer)."""
    ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype != "application/sdp":
        raise ApiError(415, "Unsupported Media Type",
                       f"the {what} must be application/sdp, not {ctype or 'missing'!r}")
    body = await request.get_data()
    if len(body) > MAX_OFFER_BYTES:
        raise ApiError(413, "Offer too large", f"more than {MAX_OFFER_BYTES} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "Malformed SDP offer", "the offer is not UTF-8") from None

__all__ = ["SDPFRAG", "IceSession", "etag", "ice_patch", "with_links"]

SDPFRAG = "application/trickle-ice-sdpfrag"


class _Ice(Protocol):
    local_ufrag: str
    remote_ufrag: str


class IceSession(Protocol):
    """A WHEP viewer (:class:`rtp.peer.Peer`) or a WHIP publisher
    (:class:`rtp.publisher.Publisher`): anything with an ICE-lite agent."""

    @property
    def ice(self) -> _Ice: ...


def etag(session: IceSession) -> str:
    """The resource's entity tag: the server's current ICE ufrag (changes on restart)."""
    return f'"{session.ice.local_ufrag}"'


def with_links(headers: Mapping[str, str], ice_servers: Sequence[Mapping[str, Any]],
               clock: Callable[[], float] = time.time) -> Headers:
    """``headers`` plus one ``Link`` per ICE server URL (see the module docstring)."""
    out = Headers(dict(headers))
    for value in link_headers(ice_servers, clock()):
        out.add("Link", value)
    return out


async def ice_patch(session: IceSession, restart: Callable[[str], str],
                    headers: Mapping[str, str]) -> Response:
    """Answer the PATCH being served for ``session`` (see the module docstring);
    ``headers`` (CORS) go on every answer."""
    ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype != SDPFRAG:
        raise ApiError(415, "Unsupported Media Type", f"PATCH needs {SDPFRAG}")
    match = request.headers.get("If-Match")
    if match is not None and match.strip() not in ("*", etag(session)):
        raise ApiError(412, "Precondition Failed",
                       f"If-Match {match.strip()!r} is not the session's ETag {etag(session)}")
    body = await request.get_data()
    if len(body) > MAX_SDPFRAG_BYTES:
        raise ApiError(413, "sdpfrag too large", f"more than {MAX_SDPFRAG_BYTES} bytes")
    try:
        frag = parse_sdpfrag(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError(400, "Malformed sdpfrag", "the body is not UTF-8") from None
    except SdpError as exc:
        raise ApiError(400, "Malformed sdpfrag", str(exc)) from None
    if frag.ice_ufrag is None or frag.ice_ufrag == session.ice.remote_ufrag:
        return Response(b"", status=204, headers=dict(headers))  # trickle: not needed
    if frag.ice_pwd is None:
        raise ApiError(400, "Malformed sdpfrag",
                       "an ICE restart (new a=ice-ufrag) needs the new a=ice-pwd too")
    answer = restart(frag.ice_ufrag)
    return Response(answer, status=200, content_type=SDPFRAG,
                    headers={**headers, "ETag": etag(session)})
