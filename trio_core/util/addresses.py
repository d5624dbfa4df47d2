"""Network addresses as the settings spell them: one parser, one loopback test, one
"wildcard host -> loopback" rule. Pure functions, no I/O.

* :func:`parse_address` reads ``host:port`` / ``[v6]:port`` (empty host = all interfaces) as
  ``api.address``, ``rtmp.address``, ``srt.address``, … are written; every listener's address
  goes through it.
* :func:`is_loopback_host` says whether a bind host only accepts local connections.
* :func:`loopback_for` is the host a local client (FFmpeg reading a ``{rtmp}``, ``{srt}`` or
  ``{memfs}`` placeholder) dials to reach a listener bound to ``host``: a wildcard bind
  (``""``, ``0.0.0.0``) becomes ``127.0.0.1`` and ``::`` becomes ``::1`` — never ``localhost``,
  which FFmpeg may resolve to ``::1`` while the listener is IPv4 only.
* :func:`url_host` brackets an IPv6 literal for use in a URL.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

__all__ = ["is_loopback_host", "is_wildcard_host", "loopback_for", "parse_address", "url_host"]

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_WILDCARD_V4 = ("", "0.0.0.0")
_WILDCARD_V6 = ("::", "[::]")


def parse_address(value: Any) -> tuple[str, int]:
    """Parse ``host:port`` (``[v6]:port``; empty host = all interfaces) into ``(host, port)``.

    ``host`` is an IP literal (normalised), a host name, or ``""``. Raises ValueError.
    """
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    text = value.strip()
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"expected [IPv6]:port, got {text!r}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"not an IPv6 address: {host!r}") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"expected host:port, got {text!r}")
        if ":" in host:
            raise ValueError(f"IPv6 addresses need brackets ([::1]:8080), got {text!r}")
    if not port_text.isdigit():
        raise ValueError(f"bad port {port_text!r} in {text!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in 0..65535, got {port}")
    if host:
        try:
            host = str(ipaddress.ip_address(host))
        except ValueError:
            if not _HOSTNAME.match(host) or host.replace(".", "").isdigit():
                raise ValueError(f"bad host {host!r} in {text!r}") from None
    return host, port


def is_loopback_host(host: str) -> bool:
    """True when a listener bound to ``host`` only accepts local connections."""
    if host == "localhost":
        return True
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_wildcard_host(host: str) -> bool:
    """True for an all-interfaces bind host (``""``, ``0.0.0.0``, ``::``)."""
    return host in _WILDCARD_V4 or host in _WILDCARD_V6


def loopback_for(host: str) -> str:
    """The host a local client dials for a listener bound to ``host`` (see module docstring)."""
    if host in _WILDCARD_V4:
        return "127.0.0.1"
    if host in _WILDCARD_V6:
        return "::1"
    return host


def url_host(host: str) -> str:
    """``host`` as written in a URL: IPv6 literals in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
