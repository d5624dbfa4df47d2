"""HLS sessions at the HTTP layer (Core's ``http/middleware/session/HLS.go``), for every mount.

Installed as ``before_request``/``after_request`` functions on the app, so it covers every
file route (disk ``/``, ``/memfs``, …) whoever registers it, for paths outside ``/api``:

* **egress** (``GET``/``HEAD``, collector ``hls``), for clients not in
  ``sessions.ip_ignorelist``: a ``.m3u8`` request without a known ``?session=`` is first
  checked against the limits (509 ``Number of sessions exceeded`` / ``Bitrate limit
  exceeded``); a given but malformed session id is refused with 403; a well-formed new one is
  registered (reference = file name without extension, local = path, remote = Referer host,
  extra = ``[anonymized ip] User-Agent``, as Core). A successful playlist is rewritten like Core does: in a
  master playlist each variant URI gets a fresh ``session`` id, in a media playlist each
  segment URI gets the request's id. Bytes of playlists and ``.ts`` segments (headers +
  body) are accounted to the session; the first segment activates it. Sessions end after
  ``sessions.session_timeout_sec`` without requests (:meth:`Collector.expire`).
* **ingress** (``PUT``/``POST``, collector ``hlsingress``): a playlist upload registers the
  stream (id = path) and accounts its size plus the sizes of the segments it lists that were
  uploaded before (their sizes are remembered, at most :data:`MAX_PENDING_SEGMENTS`), which
  gives the stream's bitrate used by the egress bitrate limit.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import secrets
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import trio
from quart import Quart, Response, g, request

from ..api.errors import ApiError
from .sessions import SessionLimit, SessionRegistry

__all__ = ["anonymize_ip", "install_hls_sessions", "new_session_id", "rewrite_playlist"]

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"  # shortuuid's
SESSION_ID = re.compile(f"^[{ALPHABET}]{{22}}$")
MAX_PENDING_SEGMENTS = 10_000
MAX_PLAYLIST_BYTES = 4 * 1024 * 1024


def new_session_id() -> str:
    """A random id in shortuuid's alphabet (22 characters), as Core's."""
    return "".join(secrets.choice(ALPHABET) for _ in range(22))


def rewrite_playlist(text: str, session_id: str, request_path: str) -> str:
    """Core's rewrite: variant playlists get fresh session ids, segments ``session_id``."""
    out = []
    for line in text.split("\n"):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            out.append(line)
            continue
        parts = urlsplit(stripped)
        if not parts.path.endswith((".m3u8", ".ts")):
            out.append(line)
            continue
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                 if k != "session"]
        query.append(("session", new_session_id() if parts.path.endswith(".m3u8")
                      else session_id))
        out.append(urlunsplit(parts._replace(query=urlencode(sorted(query)))))
    return "\n".join(out)


def anonymize_ip(ip: str) -> str:
    """Core's ``AnonymizeIPString``: IPv4 /24, IPv6 /64 (host part zeroed); else as given."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    prefix = 24 if addr.version == 4 else 64
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False).network_address)


def _header_size(headers: Any) -> int:
    return sum(len(k) + len(v) + 4 for k, v in headers.items()) + 2


def install_hls_sessions(app: Quart, registry: SessionRegistry) -> None:
    """Register the HLS accounting on ``app`` (see module docstring)."""
    egress = registry.collector("hls")
    ingress = registry.collector("hlsingress")
    pending_segments: OrderedDict[str, int] = OrderedDict()

    def hls_path() -> str | None:
        path = request.path
        if path.startswith("/api") or not path.endswith((".m3u8", ".ts")):
            return None
        return path

    @app.before_request
    async def hls_before() -> None:
        path = hls_path()
        if path is None or egress is None or request.method not in ("GET", "HEAD"):
            return
        ip = request.remote_addr or ""
        if not egress.collectable(ip):
            return
        sid = request.args.get("session", "")
        g.trio_core_hls = sid
        if not path.endswith(".m3u8") or egress.is_known(sid):
            return
        stream_bitrate = ingress.session_top_ingress_bitrate(path) if ingress else 0.0
        try:
            egress.admit(ip, stream_bitrate)
        except SessionLimit as exc:
            raise ApiError(509, str(exc), "sessions.max_sessions / sessions.max_bitrate_mbit"
                           ) from None
        if sid:
            if not SESSION_ID.match(sid):
                raise ApiError(403, "Forbidden", "invalid session id")
            referrer = request.headers.get("Referer", "")
            referrer = urlsplit(referrer).hostname or referrer
            reference = posixpath.splitext(posixpath.basename(path))[0]
            egress.register(sid, reference, path, referrer[:200], expires=True)
            agent = request.headers.get("User-Agent", "")[:200]
            egress.extra(sid, f"[{anonymize_ip(ip)}] {agent}")
            egress.set_top_egress_bitrate(sid, stream_bitrate * 2.0)

    @app.after_request
    async def hls_after(response: Response) -> Response:
        path = hls_path()
        if path is None:
            return response
        if request.method in ("PUT", "POST"):
            if ingress is not None and 200 <= response.status_code < 300:
                await _ingress(path)
            return response
        sid = g.get("trio_core_hls")
        if sid is None or egress is None:
            return response
        if path.endswith(".m3u8") and response.status_code == 200 \
                and request.method == "GET":
            body = await response.get_data()
            if len(body) <= MAX_PLAYLIST_BYTES:
                text = rewrite_playlist(body.decode("utf-8", "replace"), sid, path)
                response.set_data(text.encode())
                response.headers["Cache-Control"] = "private"
        size = response.content_length or 0
        egress.egress(sid, _header_size(response.headers) + size)
        if path.endswith(".ts") and response.status_code < 300:
            egress.activate(sid)
        return response

    async def _ingress(path: str) -> None:
        assert ingress is not None
        length = request.content_length
        body = b""
        if length is None or (path.endswith(".m3u8") and length <= MAX_PLAYLIST_BYTES):
            # chunked uploads (FFmpeg's default) have no length: the body the handler read
            # is cached by Quart (a handler that streamed it away leaves b"" here). Shielded:
            # FFmpeg hangs up right after its upload, which cancels this request, and the
            # upload must be accounted all the same (bounded: the body is complete by now)
            with trio.move_on_after(1.0) as scope:
                scope.shield = True
                try:
                    body = await request.get_data()
                except Exception:
                    body = b""
        size = (length if length is not None else len(body)) + _header_size(request.headers)
        if path.endswith(".ts"):
            pending_segments[path] = size
            pending_segments.move_to_end(path)
            while len(pending_segments) > MAX_PENDING_SEGMENTS:
                pending_segments.popitem(last=False)
            return
        if not ingress.is_known(path):
            reference = posixpath.splitext(posixpath.basename(path))[0]
            ingress.register_and_activate(path, reference, path, "", expires=True)
            ingress.extra(path, request.headers.get("User-Agent", "")[:200])
        ingress.ingress(path, size)
        directory = posixpath.dirname(path)
        for line in body[:MAX_PLAYLIST_BYTES].decode("utf-8", "replace").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            segment = urlsplit(line).path
            if not segment.startswith("/"):
                segment = posixpath.normpath(posixpath.join(directory, segment))
            seg_size = pending_segments.pop(segment, None)
            if seg_size is not None:
                ingress.ingress(path, seg_size)
