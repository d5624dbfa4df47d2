"""Admission control for new viewers: how many may connect, and how many may be connecting.

Sans-IO: :func:`check_admission` looks at the current Peers and either returns or raises
:class:`~rtp.errors.Overloaded`. A *pending* viewer has posted an offer but has not finished
ICE + DTLS; it holds an ICE agent and an OpenSSL DTLS state (tens of KiB) until it connects
or its setup timeout closes it, so pending viewers are capped per source, per client address
and overall — a flood of offers then costs at most ``max_pending`` such states and is
refused before anything is allocated. Viewers are capped per source and overall; a pending
viewer counts as a viewer too (it takes a viewer's slot from the moment it is admitted, so
offers answered together cannot overshoot the viewer limits once they connect).
A limit of 0 means "no limit".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import Overloaded

if TYPE_CHECKING:
    from .peer import Peer

__all__ = ["AdmissionLimits", "check_admission"]


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """The limits (0 = unlimited) and the ``Retry-After`` hints of a refusal."""

    max_viewers: int = 1000
    max_viewers_per_source: int = 500
    max_pending: int = 200
    max_pending_per_source: int = 50
    max_pending_per_client: int = 10
    #: seconds a client should wait after a refusal for a pending limit / a viewer limit
    retry_pending: int = 5
    retry_viewers: int = 30

    @classmethod
    def unlimited(cls) -> AdmissionLimits:
        """No limit at all (a library default; a server should set its own)."""
        return cls(0, 0, 0, 0, 0)


def check_admission(limits: AdmissionLimits, peers_by_source: dict[str, Iterable[Peer]],
                    source_id: str, client: str) -> None:
    """Raise :class:`Overloaded` when one more viewer of ``source_id`` from ``client``
    (an IP address string, ``""`` when unknown) would exceed a limit."""
    viewers = pending = viewers_here = pending_here = pending_client = 0
    for sid, peers in peers_by_source.items():
        here = sid == source_id
        for peer in peers:
            if peer.closed:
                continue
            viewers += 1
            viewers_here += here
            if not peer.live:
                pending += 1
                pending_here += here
                pending_client += bool(client) and peer.client == client
    checks = (
        ("max_pending_per_client", limits.max_pending_per_client, pending_client,
         f"client {client}", limits.retry_pending),
        ("max_pending_per_process", limits.max_pending_per_source, pending_here,
         f"process {source_id}", limits.retry_pending),
        ("max_pending", limits.max_pending, pending, "the server", limits.retry_pending),
        ("max_viewers_per_process", limits.max_viewers_per_source, viewers_here,
         f"process {source_id}", limits.retry_viewers),
        ("max_viewers", limits.max_viewers, viewers, "the server", limits.retry_viewers),
    )
    for name, limit, count, scope, retry in checks:
        if limit and count >= limit:
            what = "sessions still connecting" if "pending" in name else "viewers"
            raise Overloaded(name, f"{scope} has {count} WebRTC {what} (webrtc.{name} = {limit})",
                             retry)
