"""HLS sessions on the storage mounts (Core's ``http/middleware/session/HLS.go``), at the ASGI layer.

:class:`HLSSessions` is Core's HLS session middleware. The storage mounts
(:class:`trio_core.storage.mounts.StorageHTTP`: ``/memfs/*`` and the disk mount at ``/``, on
the public port and on the loopback ``{memfs}`` endpoint FFmpeg writes to) call it around
every request for a path ending in ``.m3u8`` or ``.ts``, as Core applies it to its
filesystem routes; ``/api`` (including ``/api/v3/fs``) is not covered, as in Core.

* **egress** (``GET``/``HEAD``, collector ``hls``), for clients not in
  ``sessions.ip_ignorelist`` (the TCP peer address): a ``.m3u8`` request without a known
  ``?session=`` is first checked against the limits (509, Core's JSON error with details
  ``Number of sessions exceeded`` / ``Bitrate limit exceeded``); a given but malformed
  session id is refused with 403; a well-formed new one is registered (reference = file name
  without extension, local = path, remote = Referer host, extra = ``[anonymized ip]
  User-Agent``, as Core). A playlist ``GET`` is answered whole (``Range`` dropped, Core
  has no Range support; FFmpeg sends ``bytes=0-``) and a ``200`` answer is rewritten as Core does
  (:func:`rewrite_playlist`): in a master playlist each variant URI gets a fresh ``session``
  id; in a media playlist each segment URI gets the request's id, and a media playlist
  requested *without* a session id is answered with a one-variant master playlist pointing
  back at itself with a fresh id — so every player ends up on a session. Only playlists (at
  most :data:`MAX_PLAYLIST_BYTES`) are buffered; segments pass through untouched (memfs's
  zero-copy slices). Bytes sent (response head + body, counted as they go out) are the
  session's egress; a segment request activates it. Sessions end after
  ``sessions.session_timeout_sec`` without requests (:meth:`Collector.expire`).
* **ingress** (``PUT``/``POST``, collector ``hlsingress``, not limited, every client): a
  segment upload remembers its size (body + request head; at most
  :data:`MAX_PENDING_SEGMENTS`); a playlist upload registers the stream (id = path) and
  accounts its size plus the sizes of the segments it lists that were uploaded before — the
  stream's bitrate, which the egress bitrate limit uses. Only uploads the mount accepted
  (2xx) with a complete, non-empty body count; the accounting runs when the request ends,
  also when FFmpeg hangs up right after its last chunk without reading the answer.

Cancellation: the middleware adds no waiting of its own; cancelling the request cancels the
wrapped handler, and the (synchronous) accounting of what happened so far still runs.
"""

from __future__ import annotations

import ipaddress
import json
import posixpath
import re
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from trio_core.http.go_json import JSON_CONTENT_TYPE_BYTES
from trio_core.observability.sessions import Collector, SessionLimit

__all__ = ["SESSION_ID", "HLSSessions", "anonymize_ip", "new_session_id", "rewrite_playlist"]

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"  # shortuuid's
SESSION_ID = re.compile(f"^[{ALPHABET}]{{22}}$")
MAX_PENDING_SEGMENTS = 10_000
MAX_PLAYLIST_BYTES = 4 * 1024 * 1024

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def new_session_id() -> str:
    """A random id in shortuuid's alphabet (22 characters), as Core's."""
    return "".join(secrets.choice(ALPHABET) for _ in range(22))


def _encode(query: list[tuple[str, str]]) -> str:
    """Go's ``url.Values.Encode``: sorted by key, values in order."""
    return urlencode(sorted(query, key=lambda kv: kv[0]))


def rewrite_playlist(text: str, session_id: str, request_path: str,
                     request_query: str = "") -> str:
    """Core's ``rewriteHLS``: variant playlists get fresh session ids, segments
    ``session_id``; a variant referencing the playlist itself becomes a comment; a media
    playlist requested without a session id becomes a master playlist pointing back at
    itself with a fresh id."""
    out: list[str] = []
    is_master = False
    for line in text.splitlines():
        if not line or line.startswith("#"):
            out.append(line + "\n")
            continue
        parts = urlsplit(line)
        if not parts.path.endswith((".m3u8", ".ts")):
            out.append(line + "\n")
            continue
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                 if k != "session"]
        loop = False
        if parts.path.endswith(".m3u8"):
            file = parts.path
            if not file.startswith("/"):
                file = posixpath.normpath(posixpath.join(posixpath.dirname(request_path), file))
            loop = file == request_path
            query.append(("session", new_session_id()))
            is_master = True
        else:
            query.append(("session", session_id))
        uri = urlunsplit(parts._replace(query=_encode(query)))
        out.append(f"# m3u8 is referencing itself: {uri}\n" if loop else uri + "\n")
    if not is_master and not session_id:
        query = [(k, v) for k, v in parse_qsl(request_query, keep_blank_values=True)
                 if k != "session"]
        query.append(("session", new_session_id()))
        return ("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:BANDWIDTH=1024\n"
                f"{posixpath.basename(request_path)}?{_encode(query)}")
    return "".join(out)


def anonymize_ip(ip: str) -> str:
    """Core's ``AnonymizeIPString``: IPv4 /24, IPv6 /64 (host part zeroed); else as given."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    prefix = 24 if addr.version == 4 else 64
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False).network_address)


def _header_size(headers: Any) -> int:
    """Size of a header block as Go's ``Header.Write`` renders it (``k: v\\r\\n`` each)."""
    return sum(len(k) + len(v) + 4 for k, v in headers)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


class HLSSessions:
    """Core's HLS session middleware over ASGI; see the module docstring.

    ``await sessions(scope, receive, send, handler)`` runs ``handler`` (the mount) for one
    request with the accounting around it. Either collector may be None (not accounted).
    """

    def __init__(self, egress: Collector | None, ingress: Collector | None) -> None:
        self.egress = egress
        self.ingress = ingress
        self._segments: OrderedDict[str, int] = OrderedDict()  # uploaded, not yet listed

    @staticmethod
    def applies(path: str) -> bool:
        """True for the paths Core's middleware accounts (``*.m3u8``, ``*.ts``)."""
        return path.endswith((".m3u8", ".ts"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send,
                       handler: ASGIApp) -> None:
        path: str = scope.get("path", "")
        method: str = scope.get("method", "")
        if scope.get("type") == "http" and self.applies(path):
            if method in ("PUT", "POST") and self.ingress is not None:
                await self._ingress(scope, receive, send, handler, self.ingress)
                return
            if method in ("GET", "HEAD") and self.egress is not None:
                await self._egress(scope, receive, send, handler, self.egress)
                return
        await handler(scope, receive, send)

    # -- egress -------------------------------------------------------------------------------
    async def _egress(self, scope: Scope, receive: Receive, send: Send, handler: ASGIApp,
                      egress: Collector) -> None:
        client = scope.get("client") or ("", 0)
        ip = str(client[0])
        if not egress.collectable(ip):
            await handler(scope, receive, send)
            return
        path: str = scope["path"]
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        sid = next((v for k, v in parse_qsl(query, keep_blank_values=True)
                    if k == "session"), "")
        is_playlist = path.endswith(".m3u8")
        if is_playlist and not egress.is_known(sid):
            stream_bitrate = (self.ingress.session_top_ingress_bitrate(path)
                              if self.ingress is not None else 0.0)
            try:
                egress.admit(ip, stream_bitrate)
            except SessionLimit as exc:
                # echo's HTTPError(509, reason) through Core's error handler
                await _error(scope, send, 509, "Bandwith limit exceeded", str(exc))
                return
            if sid:
                if not SESSION_ID.match(sid):
                    await _error(scope, send, 403, "Forbidden", "Forbidden")
                    return
                referrer = _header(scope, b"referer")
                try:
                    referrer = urlsplit(referrer).netloc  # Go: url.Parse(referrer).Host
                except ValueError:
                    pass
                reference = posixpath.splitext(posixpath.basename(path))[0]
                egress.register(sid, reference, path, referrer[:200], expires=True)
                agent = _header(scope, b"user-agent")[:200]
                egress.extra(sid, f"[{anonymize_ip(ip)}] {agent}")
                egress.set_top_egress_bitrate(sid, stream_bitrate * 2.0)

        rewrite = is_playlist and scope.get("method") == "GET"
        if rewrite:
            # the answer is rewritten per session, so a byte range of the stored file means
            # nothing; FFmpeg asks for "bytes=0-": answer the whole playlist (Core: no Range)
            scope = {**scope, "headers": [(k, v) for k, v in scope.get("headers", ())
                                          if k.lower() != b"range"]}
        held: dict[str, Any] | None = None  # the 200 head of a playlist being rewritten
        body = bytearray()

        async def counted_send(message: dict[str, Any]) -> None:
            nonlocal held, rewrite
            kind = message.get("type")
            if kind == "http.response.start":
                if rewrite and message.get("status") == 200:
                    held = message
                    return
                rewrite = False
                egress.egress(sid, _header_size(message.get("headers", ())))
                await send(message)
                return
            if kind != "http.response.body":
                await send(message)
                return
            chunk = message.get("body", b"")
            if held is not None:
                body.extend(chunk)
                if len(body) > MAX_PLAYLIST_BYTES:  # not a playlist we rewrite: pass it on
                    head, held = held, None
                    rewrite = False
                    egress.egress(sid, _header_size(head.get("headers", ())))
                    await send(head)
                    egress.egress(sid, len(body))
                    await send({**message, "body": bytes(body)})
                    body.clear()
                    return
                if message.get("more_body", False):
                    return
                head, held = held, None
                text = rewrite_playlist(body.decode("utf-8", "replace"), sid, path, query)
                data = text.encode()
                headers = [(k, v) for k, v in head.get("headers", ())
                           if k.lower() not in (b"content-length", b"cache-control")]
                headers += [(b"cache-control", b"private"),
                            (b"content-length", str(len(data)).encode())]
                egress.egress(sid, _header_size(headers))
                await send({**head, "headers": headers})
                egress.egress(sid, len(data))
                await send({"type": "http.response.body", "body": data})
                return
            await send(message)
            egress.egress(sid, len(chunk))

        try:
            await handler(scope, receive, counted_send)
        finally:
            if path.endswith(".ts"):
                egress.activate(sid)  # as Core: the first segment request activates

    # -- ingress ------------------------------------------------------------------------------
    async def _ingress(self, scope: Scope, receive: Receive, send: Send, handler: ASGIApp,
                       ingress: Collector) -> None:
        path: str = scope["path"]
        is_playlist = path.endswith(".m3u8")
        size = 0
        complete = False
        status = 0
        text = bytearray()

        async def counted_receive() -> dict[str, Any]:
            nonlocal size, complete
            message = await receive()
            if message.get("type") == "http.request":
                chunk = message.get("body", b"")
                size += len(chunk)
                if is_playlist and len(text) < MAX_PLAYLIST_BYTES:
                    text.extend(chunk[:MAX_PLAYLIST_BYTES - len(text)])
                if not message.get("more_body", False):
                    complete = True
            return message

        async def status_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = int(message.get("status", 0))  # before sending: the client may be gone
            await send(message)

        try:
            await handler(scope, counted_receive, status_send)
        finally:
            if complete and size > 0 and 200 <= status < 300:
                self._account_upload(ingress, path, size + _header_size(scope.get("headers", ())),
                                     bytes(text), _header(scope, b"user-agent"))

    def _account_upload(self, ingress: Collector, path: str, size: int, text: bytes,
                        agent: str) -> None:
        if path.endswith(".ts"):
            self._segments[path] = size
            self._segments.move_to_end(path)
            while len(self._segments) > MAX_PENDING_SEGMENTS:
                self._segments.popitem(last=False)
            return
        if not ingress.is_known(path):
            reference = posixpath.splitext(posixpath.basename(path))[0]
            ingress.register_and_activate(path, reference, path, "", expires=True)
            ingress.extra(path, agent[:200])
        ingress.ingress(path, size)
        directory = posixpath.dirname(path)
        for line in text.decode("utf-8", "replace").splitlines():
            if not line or line.startswith("#"):
                continue
            parts = urlsplit(line)
            if parts.scheme or not parts.path.endswith(".ts"):
                continue
            segment = parts.path
            if not segment.startswith("/"):
                segment = posixpath.normpath(posixpath.join(directory, segment))
            seg_size = self._segments.pop(segment, None)
            if seg_size is not None:
                ingress.ingress(path, seg_size)


async def _error(scope: Scope, send: Send, status: int, message: str, detail: str) -> None:
    """Core's error handler: JSON ``{code, message, details}``; no body for HEAD."""
    body = b"" if scope.get("method") == "HEAD" else json.dumps(
        {"code": status, "message": message, "details": [detail]},
        separators=(",", ":")).encode() + b"\n"
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", JSON_CONTENT_TYPE_BYTES), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
