"""The per-viewer hot path: one producer packet to every viewer of a Source track.

For each viewer track in steady state: rewrite the 12-byte RTP header (the viewer's payload
type, its own SSRC, sequence/timestamp offsets; the marker bit and everything after the
header kept), SRTP-protect it with the viewer's session, send it. A full socket buffer, an
unusable address or an SRTP refusal drops the packet for that viewer only (``dropped``);
``packets``/``bytes`` count what the kernel took.

Two implementations with the same contract, counter for counter:

* **Native** (``rtp._fanout``, built from ``rtp/_fanout.c`` when a compiler is there): an
  :class:`Engine` per forwarder with ``workers`` native threads (``webrtc.fanout_workers``;
  1 = no thread, everything runs inline on the trio thread). Each Source track has a fan-out
  **table** (``engine.table()``) and each viewer a C **viewer** (``engine.viewer(ctx)``) that
  holds everything the per-packet path needs — resolved ``sockaddr`` and socket, its own
  libsrtp outbound RTP session (owned by the viewer, freed exactly once) — or, for the
  AEAD_AES_128_GCM profile, its own AES-GCM context (``rtp/srtp_gcm.h``: libcrypto's EVP
  keyed once, the same bytes as libsrtp at ~0.8 µs less per packet; :data:`GCM`,
  ``RTP_FANOUT_GCM=0`` turns it off), per track payload type, SSRC, seq/ts offsets and
  counters. Python touches it only when the viewer joins,
  leaves or changes (``set_track``, ``join``, ``leave``, ``set_address``, ``close``); the
  per-packet path (``table.fan_out(data, seq, ts)``) reads no Python object. A viewer
  belongs to one worker, which runs — in order — its live packets, its own packets
  (``viewer.send``: GOP bursts, replays, NACK resends, RTX) and its changes, so its SRTP
  session is used by one thread only and its packets keep their order. Workers protect and
  ``sendmmsg`` with the GIL released; each has a bounded ring (:data:`RING_SLOTS`): a live
  packet that finds it full is dropped for that worker's stripe and counted per viewer. After
  ``viewer.close()`` returns nothing more is sent for it; ``engine.close()`` joins every
  thread. See ``rtp/_fanout.c``.

  A C viewer can also have a **stream transport** (an ICE-TCP connection,
  ``viewer.attach_stream``): its worker then protects, frames (RFC 4571) and writes each
  packet with a non-blocking ``sendmsg`` on the connection's socket, keeping what the kernel
  did not take in a per-viewer byte-bounded queue (partial writes never break the framing),
  flushed by the worker before its next write and by Python when the socket is writable
  (``viewer.flush()``, woken through an eventfd the worker writes when the queue turns
  non-empty). Over the limit, video skips to the next keyframe (``fan_out``'s flags tell
  which packets start one). While attached, the viewer is the connection's only writer:
  Python's own frames (STUN, DTLS, SRTCP) go through ``viewer.send_frame`` into the same
  queue; ``viewer.detach_stream()`` hands back what is still queued. See ``rtp/tcp.py``.
* **Python** (:func:`fan_out_python`, ``RTP_FANOUT=python`` or no compiler): per viewer one
  header pack, one concatenation, one protect and one non-blocking ``sendto`` on the trio
  thread, over the :class:`~rtp.peer.OutTrack` objects in ``Source.fanout``. Tracks whose
  transport is not the UDP mux socket (``OutTrack.native_send`` False: ICE-TCP) take the
  Python path — the Peer's own sends, with the track's own ``sendto`` — unless their C
  viewer writes the connection itself (a stream transport, above).

:data:`NATIVE` tells whether the native engine is available. Both are synchronous for the
caller (no checkpoint): the Source's reader yields between packets.
"""

from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING, Any

import pylibsrtp

from . import sender_pool, srtp_gcm
from .srtp import DEALLOC_ADDRESS, PROTECT_ADDRESS

if TYPE_CHECKING:
    from .dtls import SrtpKeys
    from .media import SourcePacket

__all__ = ["FLAG_KEYFRAME", "FLAG_VIDEO", "GCM", "MAX_TRACKS", "NATIVE", "REFUSALS", "RING_SLOTS",
           "STREAMS", "Engine", "acquire_engine", "default_workers", "fan_out_python",
           "open_engine", "release_engine", "viewer_keys"]

_HEADER = struct.Struct("!BBHII")
#: Commands a worker's ring holds (live packets may use all but the last 64, kept for
#: viewer changes); at 250 packets/s per track that is seconds of backlog per worker.
RING_SLOTS = 4096
#: Tracks (slots) a C viewer has (``rtp._fanout.MAX_SLOTS``): a viewer with more stays on
#: the Python path.
MAX_TRACKS = 4
#: ``Viewer.send`` refusal reasons by index (how they show in ``Peer.dropped``).
REFUSALS = ("srtp-protect", "nack-too-old", "rtx-protect", "srtp-protect")


def default_workers() -> int:
    """The CPUs this process may run on (``webrtc.fanout_workers`` default)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def fan_out_python(fan: list[Any], pkt: SourcePacket) -> None:
    """Send ``pkt`` to every viewer track in ``fan`` (the pure-Python loop; ``fan`` holds
    :class:`rtp.peer.OutTrack` objects, not imported here: ``rtp.peer`` imports us)."""
    data = pkt.data
    b0 = data[0]
    marker = data[1] & 0x80
    rest = data[12:]
    seq = pkt.seq
    ts = pkt.ts
    pack = _HEADER.pack
    for t in fan:
        try:
            out = t.protect(pack(b0, marker | t.payload_type, (seq + t.seq_delta) & 0xFFFF,
                                 (ts + t.ts_delta) & 0xFFFFFFFF, t.ssrc) + rest)
            t.sendto(out, t.addr)
        except (BlockingIOError, pylibsrtp.Error, ValueError, OSError):
            t.dropped_py += 1
            continue
        t.packets_py += 1
        t.bytes_py += len(out)


def _module() -> Any:
    if os.environ.get("RTP_FANOUT", "").lower() == "python":
        return None
    if not PROTECT_ADDRESS or not DEALLOC_ADDRESS:
        return None
    try:
        from . import _fanout  # type: ignore[attr-defined]
    except ImportError:
        return None
    if not hasattr(_fanout, "Engine"):  # an extension built from an older _fanout.c
        return None
    return _fanout


_NATIVE_MODULE = _module()
#: True when the native engine (``rtp._fanout``) is available and not disabled.
NATIVE = _NATIVE_MODULE is not None
#: The engine type (``rtp._fanout.Engine``), or None without the native fan-out.
Engine: Any = _NATIVE_MODULE.Engine if NATIVE else None
#: True when native viewers protect AEAD_AES_128_GCM RTP with the fan-out's own AES-GCM
#: (``rtp/srtp_gcm.h``) rather than libsrtp; off with ``RTP_FANOUT_GCM=0`` (benches compare).
GCM = (NATIVE and hasattr(_NATIVE_MODULE, "gcm_install")
       and os.environ.get("RTP_FANOUT_GCM", "1") != "0"
       and srtp_gcm.install(_NATIVE_MODULE))


def viewer_keys(keys: SrtpKeys) -> tuple[bytes, ...]:
    """The extra arguments of ``engine.viewer(ctx, …)`` for a viewer with ``keys``: its
    AES-GCM session key and salt when :data:`GCM` and the profile is AEAD_AES_128_GCM, else
    none (its libsrtp session protects its RTP)."""
    if not GCM or keys.profile != pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM:
        return ()
    return srtp_gcm.session_keys(keys.tx_key, keys.tx_salt)
#: True when C viewers can write a stream transport (ICE-TCP) themselves
#: (``Viewer.attach_stream``): then ICE-TCP viewers are native too.
STREAMS = NATIVE and hasattr(_NATIVE_MODULE.Viewer, "attach_stream")
#: ``Table.fan_out`` flags: the packet starts a keyframe / is video (the keyframe gate of
#: stream viewers).
FLAG_KEYFRAME, FLAG_VIDEO = 1, 2


def open_engine(workers: int | None = None, ring_slots: int = RING_SLOTS) -> Any:
    """A new native engine with ``workers`` threads (None: :func:`default_workers`; 1: no
    thread), or None without the native fan-out. The caller owns it: ``engine.close()`` in
    a ``finally`` (it joins the threads)."""
    if not NATIVE:
        return None
    count = default_workers() if workers is None or workers <= 0 else workers
    return _NATIVE_MODULE.Engine(PROTECT_ADDRESS, DEALLOC_ADDRESS, count, ring_slots)



def acquire_engine(workers: int | None = None) -> Any:
    """The process's shared native sender pool (:mod:`rtp.sender_pool`, also serving the
    RTMP relay's players) with libsrtp's functions, or None without the native fan-out.
    Pair with :func:`release_engine` (the last holder's release joins the threads)."""
    if not NATIVE:
        return None
    return sender_pool.acquire(workers, protect=PROTECT_ADDRESS, dealloc=DEALLOC_ADDRESS)


def release_engine(engine: Any) -> None:
    """Give back an engine of :func:`acquire_engine`."""
    sender_pool.release(engine)
