"""One HTTP/1.1 server connection, sans-IO: bytes in -> request events, responses -> bytes.

Contract: feed what the socket gave with :meth:`Connection.receive_data` (``b""`` = the peer
closed its side) and pull events with :meth:`Connection.next_event` until it returns
:data:`NEED_DATA` (read more) or :data:`PAUSED` (a request is complete and waits for its
response: a pipelined next request stays buffered until the response ended — answers go out
in request order). Events:

* :class:`Request` — method, target, headers (names lower-case), framing of the body;
  ``has_body`` False means the request is complete with this event.
* :class:`Data` — a piece of the body (``end`` True on the last piece of a body whose end is
  known here: a ``Content-Length`` body; a chunked body ends with :data:`END_OF_MESSAGE`).
* :data:`END_OF_MESSAGE` — a chunked body ended.
* :data:`CLOSED` — the peer closed (between requests: the normal end of keep-alive;
  mid-request: the client went away).

Bad input raises :class:`HttpError` with the status to answer (400; 413 body over
``max_body``; 414 request line over ``max_head``; 431 head over ``max_head`` or more than
``max_headers`` header lines; 501 a transfer coding other than chunked; 505 not HTTP/1.x)
and a message naming the problem; :meth:`Connection.error_response` renders it
(``Connection: close``; the connection is done).

The response: :meth:`Connection.response_head` (status, headers, the body length when known
— else chunked for HTTP/1.1 or close-delimited for 1.0), :meth:`Connection.body_pieces` for
each piece (chunk framing added; nothing for ``HEAD`` and bodyless statuses) and
:meth:`Connection.end_pieces`; all return bytes-like pieces to write in order (one
``sendmsg`` of head + body when the whole answer is known — no copy of the body).
:meth:`Connection.continue_response` gives ``100 Continue`` once, when the request expects it
and the application starts reading the body (not before: a 401 can be answered first, as Go's
server does). After the response ended, :attr:`Connection.keep_alive` says whether the next
request may follow on this connection: not after ``Connection: close``, HTTP/1.0, an error, a
response started while a ``100-continue`` body was never asked for, or a body left unread
beyond :data:`DRAIN_LIMIT` (a smaller rest is read and dropped before the next request).

Keep-alive is never ended by a count of requests. No I/O, no clock, no tasks: the shell
(:mod:`trio_core.httpd.server`) owns sockets and timeouts.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

__all__ = [
    "CLOSED", "DRAIN_LIMIT", "END_OF_MESSAGE", "NEED_DATA", "PAUSED", "Connection", "Data",
    "HttpError", "Limits", "Request",
]

DRAIN_LIMIT = 256 * 1024  # an unread request body up to this is read and dropped (as Go)
MAX_CHUNK_LINE = 1024  # a chunk-size line (with extensions) or a trailer line
BODYLESS_STATUSES = frozenset({204, 304})


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA: Final = _Sentinel("NEED_DATA")
PAUSED: Final = _Sentinel("PAUSED")
END_OF_MESSAGE: Final = _Sentinel("END_OF_MESSAGE")
CLOSED: Final = _Sentinel("CLOSED")


@dataclass(frozen=True)
class Limits:
    """Size limits of one connection (bytes; ``max_body`` 0 = none)."""

    max_head: int = 16 * 1024  # request line + headers
    max_headers: int = 100  # header lines
    max_body: int = 0


class HttpError(Exception):
    """Bad request input: ``status`` to answer, ``message`` naming the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Request:
    """A request head. ``headers`` is a list of ``(lower-case name, value)`` bytes pairs."""

    __slots__ = ("chunked", "content_length", "expect_continue", "has_body", "headers",
                 "http_version", "keep_alive", "method", "target")

    def __init__(self, method: str, target: bytes, http_version: str,
                 headers: list[tuple[bytes, bytes]], content_length: int | None,
                 chunked: bool, keep_alive: bool, expect_continue: bool) -> None:
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers
        self.content_length = content_length
        self.chunked = chunked
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.has_body = chunked or bool(content_length)

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower-case), None when absent."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def __repr__(self) -> str:
        return f"Request({self.method} {self.target!r} HTTP/{self.http_version})"


class Data:
    """A piece of a request body; ``end`` True when it is the body's last."""

    __slots__ = ("data", "end")

    def __init__(self, data: bytes, end: bool) -> None:
        self.data = data
        self.end = end

    def __repr__(self) -> str:
        return f"Data({len(self.data)} bytes, end={self.end})"


_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                   b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_STATUS_LINES: dict[int, bytes] = {}
_date_cache: list[object] = [0, b""]


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        line = f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")
        _STATUS_LINES[status] = line
    return line


def http_date() -> bytes:
    """``Date: ...\\r\\n`` for now (IMF-fixdate), rendered once per second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = b"date: " + time.strftime(
            "%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)).encode() + b"\r\n"
    return _date_cache[1]  # type: ignore[return-value]


def _is_token(value: bytes) -> bool:
    return bool(value) and all(c in _TOKEN for c in value)


# their states
_IDLE, _BODY, _DONE, _ERROR = range(4)
# body framings
_LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS = range(5)


class Connection:
    """See the module docstring. ``limits`` bound what one request may send."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._buf = bytearray()
        self._eof = False
        self._their = _IDLE
        self._framing = _LENGTH
        self._remaining = 0  # body bytes left (Content-Length) or of the current chunk
        self._body_size = 0  # body bytes received so far (max_body)
        self._draining = False  # the response ended before the body: drop the rest
        self._drained = 0
        self.request: Request | None = None
        self.keep_alive = True
        self.requests = 0  # requests started on this connection
        self.continue_sent = False
        self._responding = False  # a response head was produced, its end not yet
        self._head_method = False
        self._chunked_out = False
        self._no_body_out = False
        self._out_declared = -1  # the response's Content-Length (-1: none)
        self._out_sent = 0

    # -- input --------------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; ``b""`` means it closed its sending side."""
        if data:
            self._buf += data
        else:
            self._eof = True

    @property
    def buffered(self) -> int:
        """Bytes received and not consumed yet (e.g. a pipelined next request)."""
        return len(self._buf)

    @property
    def idle(self) -> bool:
        """True between requests with nothing buffered (a graceful stop may close now)."""
        return self._their == _IDLE and not self._buf and not self._responding

    @property
    def unread(self) -> bool:
        """True when the peer sent (or is sending) request bytes not consumed: closing now
        could reset the connection before it read our last answer."""
        return bool(self._buf) or self._their == _BODY or self._their == _ERROR

    @property
    def body_complete(self) -> bool:
        """True when the current request's body was read to its end (or it had none)."""
        return self._their == _DONE

    def next_event(self) -> Request | Data | _Sentinel:
        """The next event; raises HttpError for bad input (see the module docstring)."""
        state = self._their
        if state == _BODY:
            event = self._body_event()
            if event is None:
                return CLOSED if self._eof else NEED_DATA
            if self._draining:
                return self._drop(event)
            return event
        if state == _IDLE:
            if self._responding:
                return PAUSED
            return self._head_event()
        if state == _DONE:
            return PAUSED
        raise HttpError(400, "connection unusable after an error")

    def _drop(self, event: Data | _Sentinel) -> Data | _Sentinel:
        """Drain: a body left unread by an ended response is read and dropped."""
        if isinstance(event, Data):
            self._drained += len(event.data)
            if self._drained > DRAIN_LIMIT:
                self.keep_alive = False
                self._their = _ERROR
                return CLOSED
            if not event.end:
                return self.next_event()
        self._draining = False
        self._their = _IDLE
        return self.next_event()

    # -- request head -------------------------------------------------------------------------
    def _head_event(self) -> Request | _Sentinel:
        buf = self._buf
        while buf[:2] == b"\r\n":  # RFC 9112 2.2: ignore empty lines before a request line
            del buf[:2]
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > self.limits.max_head:
                self._their = _ERROR
                if buf.find(b"\r\n", 0, self.limits.max_head) < 0:
                    raise HttpError(414, f"request line longer than {self.limits.max_head} bytes")
                raise HttpError(431, f"request head larger than {self.limits.max_head} bytes")
            if self._eof:
                return CLOSED
            return NEED_DATA
        if end > self.limits.max_head:
            self._their = _ERROR
            raise HttpError(431, f"request head larger than {self.limits.max_head} bytes")
        head = bytes(buf[:end])
        del buf[:end + 4]
        try:
            request = self._parse_head(head)
        except HttpError:
            self._their = _ERROR
            self.keep_alive = False
            raise
        self.request = request
        self.requests += 1
        self.continue_sent = False
        self._head_method = request.method == "HEAD"
        if not request.keep_alive:
            self.keep_alive = False
        if request.chunked:
            self._their = _BODY
            self._framing = _CHUNK_SIZE
            self._body_size = 0
        elif request.content_length:
            self._their = _BODY
            self._framing = _LENGTH
            self._remaining = request.content_length
        else:
            self._their = _DONE
        return request

    def _parse_head(self, head: bytes) -> Request:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            raise HttpError(400, "malformed request line")
        method_b, target, version = parts
        if not _is_token(method_b):
            raise HttpError(400, "malformed request method")
        if not target or any(c <= 32 or c == 127 for c in target):
            raise HttpError(400, "malformed request target")
        if version == b"HTTP/1.1":
            http_version = "1.1"
        elif version == b"HTTP/1.0":
            http_version = "1.0"
        elif version.startswith(b"HTTP/"):
            raise HttpError(505, f"HTTP version {version[5:].decode('latin-1')!r} not supported")
        else:
            raise HttpError(400, "malformed request line")
        if len(lines) - 1 > self.limits.max_headers:
            raise HttpError(431, f"more than {self.limits.max_headers} header lines")
        headers: list[tuple[bytes, bytes]] = []
        content_length: int | None = None
        chunked = False
        connection = b""
        expect = False
        host = False
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not _is_token(name):
                if line[:1] in (b" ", b"\t"):
                    raise HttpError(400, "obsolete header line folding")
                raise HttpError(400, f"malformed header line {line[:40]!r}")
            name = name.lower()
            value = value.strip(b" \t")
            if b"\r" in value or b"\n" in value or b"\x00" in value:
                raise HttpError(400, f"malformed value of header {name.decode()}")
            headers.append((name, value))
            if name == b"content-length":
                if not value.isdigit() or len(value) > 18:
                    raise HttpError(400, "malformed Content-Length")
                length = int(value)
                if content_length is not None and content_length != length:
                    raise HttpError(400, "conflicting Content-Length headers")
                content_length = length
            elif name == b"transfer-encoding":
                if value.lower() != b"chunked" or chunked:
                    raise HttpError(501, f"transfer coding {value.decode('latin-1')!r} not "
                                         "supported (only chunked)")
                chunked = True
            elif name == b"connection":
                connection = connection + b"," + value.lower() if connection else value.lower()
            elif name == b"expect":
                if value.lower() == b"100-continue":
                    expect = True
            elif name == b"host":
                host = True
        if chunked and content_length is not None:
            raise HttpError(400, "both Transfer-Encoding and Content-Length")
        if chunked and http_version == "1.0":
            raise HttpError(400, "chunked request body in HTTP/1.0")
        if http_version == "1.1" and not host:
            raise HttpError(400, "missing Host header")
        max_body = self.limits.max_body
        if max_body and content_length is not None and content_length > max_body:
            raise HttpError(413, f"request body of {content_length} bytes larger than "
                                 f"{max_body} bytes")
        tokens = [t.strip() for t in connection.split(b",")] if connection else []
        keep_alive = http_version == "1.1" and b"close" not in tokens
        return Request(method_b.decode("ascii"), target, http_version, headers,
                       content_length, chunked, keep_alive,
                       expect and http_version == "1.1" and (chunked or bool(content_length)))

    # -- request body -------------------------------------------------------------------------
    def _take_remaining(self) -> bytes:
        """Take what is buffered of the current length-framed piece (a Content-Length body or
        a chunk's data), at most what is left of it."""
        buf = self._buf
        n = min(len(buf), self._remaining)
        data = bytes(buf[:n]) if n < len(buf) else bytes(buf)
        del buf[:n]
        self._remaining -= n
        return data

    def _body_event(self) -> Data | _Sentinel | None:
        buf = self._buf
        if self._framing == _LENGTH:
            if not buf:
                return None
            data = self._take_remaining()
            end = self._remaining == 0
            if end:
                self._their = _DONE
            return Data(data, end)
        while True:
            framing = self._framing
            if framing == _CHUNK_SIZE:
                nl = buf.find(b"\r\n", 0, MAX_CHUNK_LINE + 2)
                if nl < 0:
                    if len(buf) > MAX_CHUNK_LINE:
                        self._fail(400, "chunk size line too long")
                    return None
                line = bytes(buf[:nl]).split(b";", 1)[0].strip(b" \t")
                del buf[:nl + 2]
                if not line or len(line) > 16 or not all(c in _HEX for c in line):
                    self._fail(400, "malformed chunk size")
                size = int(line, 16)
                if size == 0:
                    self._framing = _TRAILERS
                    continue
                self._body_size += size
                if self.limits.max_body and self._body_size > self.limits.max_body:
                    self._fail(413, f"request body larger than {self.limits.max_body} bytes")
                self._remaining = size
                self._framing = _CHUNK_DATA
            elif framing == _CHUNK_DATA:
                if not buf:
                    return None
                data = self._take_remaining()
                if self._remaining == 0:
                    self._framing = _CHUNK_CRLF
                return Data(data, False)
            elif framing == _CHUNK_CRLF:
                if len(buf) < 2:
                    return None
                if buf[:2] != b"\r\n":
                    self._fail(400, "chunk data not followed by CRLF")
                del buf[:2]
                self._framing = _CHUNK_SIZE
            else:  # trailers: skipped up to the empty line
                nl = buf.find(b"\r\n", 0, MAX_CHUNK_LINE + 2)
                if nl < 0:
                    if len(buf) > MAX_CHUNK_LINE:
                        self._fail(431, "trailer line too long")
                    return None
                del buf[:nl + 2]
                if nl == 0:
                    self._their = _DONE
                    return END_OF_MESSAGE

    def _fail(self, status: int, message: str) -> None:
        self._their = _ERROR
        self.keep_alive = False
        raise HttpError(status, message)

    # -- response -----------------------------------------------------------------------------
    def continue_response(self) -> bytes:
        """``100 Continue`` when the request waits for it and it was not sent, else ``b""``."""
        request = self.request
        if (request is None or not request.expect_continue or self.continue_sent
                or self._their != _BODY or self._responding):
            return b""
        self.continue_sent = True
        return b"HTTP/1.1 100 Continue\r\n\r\n"

    def response_head(self, status: int, headers: list[tuple[bytes, bytes]],
                      content_length: int | None = None, *, close: bool = False) -> bytes:
        """The response head. ``headers`` as the application gave them (a ``content-length``
        among them is the body length; else ``content_length``; else the body is chunked
        (HTTP/1.1) or ends with the connection (1.0)). ``close`` ends the connection after
        this response. Raises ValueError for a header value with CR/LF."""
        request = self.request
        if request is not None and self._their == _BODY:
            # answered before the body was read: a client waiting for 100-continue may never
            # send it, and a large rest is not worth reading; else it is drained afterwards
            if (request.expect_continue and not self.continue_sent) or request.chunked or (
                    self._remaining > DRAIN_LIMIT):
                self.keep_alive = False
        if close:
            self.keep_alive = False
        self._responding = True
        bodyless = status in BODYLESS_STATUSES or status < 200
        self._no_body_out = bodyless or self._head_method
        out = [_status_line(status), http_date()]
        given_length = False
        for name, value in headers:
            lname = name.lower()
            if lname == b"content-length":
                given_length = True
                self._out_declared = int(value) if value.isdigit() else -1
            elif lname == b"transfer-encoding" or lname == b"connection" or lname == b"date":
                continue  # framing and connection are ours
            if b"\n" in value or b"\r" in value or b"\n" in name or b"\r" in name:
                raise ValueError(f"CR/LF in response header {name!r}")
            out += (lname, b": ", value, b"\r\n")
        self._chunked_out = False
        self._out_sent = 0
        if not given_length:
            self._out_declared = -1
        if not given_length and not bodyless:
            if content_length is not None:
                self._out_declared = content_length
                out.append(b"content-length: %d\r\n" % content_length)
            elif self._head_method:
                pass
            elif request is not None and request.http_version == "1.0":
                self.keep_alive = False
            else:
                self._chunked_out = True
                out.append(b"transfer-encoding: chunked\r\n")
        if not self.keep_alive:
            out.append(b"connection: close\r\n")
        out.append(b"\r\n")
        return b"".join(out)

    def body_pieces(self, data: bytes | memoryview) -> list[bytes | memoryview]:
        """The wire pieces for ``data`` of the response body (framed when chunked)."""
        if self._no_body_out or not data:
            return []
        self._out_sent += len(data)
        if self._chunked_out:
            return [b"%x\r\n" % len(data), data, b"\r\n"]
        return [data]

    def end_pieces(self) -> list[bytes]:
        """Ends the response; the pieces left to write (the last chunk when chunked). Then
        :attr:`keep_alive` tells whether the next request may come on this connection."""
        self._responding = False
        if not self._no_body_out and 0 <= self._out_sent < self._out_declared:
            self.keep_alive = False  # the body ended short of its Content-Length: close
        if self._their == _ERROR:
            self.keep_alive = False
        elif self._their == _BODY and self.keep_alive:
            self._draining = True
            self._drained = 0
        elif self._their == _DONE:
            self._their = _IDLE
            self.request = None
        if self._chunked_out and not self._no_body_out:
            return [b"0\r\n\r\n"]
        return []

    def error_response(self, error: HttpError) -> bytes:
        """The answer to bad input (JSON ``{code, message, details}``, connection closes)."""
        self.keep_alive = False
        self._their = _ERROR
        phrase = _status_line(error.status)[13:-2].decode("latin-1")
        body = json.dumps({"code": error.status, "message": phrase, "details": [error.message]},
                          separators=(",", ":")).encode() + b"\n"
        return (_status_line(error.status) + http_date()
                + b"content-type: application/json; charset=UTF-8\r\ncontent-length: %d\r\n"
                  b"connection: close\r\n\r\n" % len(body) + body)
