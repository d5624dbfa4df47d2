"""One relay policy, sans-IO: what every relay of trio-core (RTMP, SRT, WebRTC) decides the
same way, as pure classes over "units" (an RTMP message, an MPEG-TS chunk, an RTP packet).

* :mod:`relay.gop` — :class:`GopCache`: the units since the last GOP start, byte (and
  optionally unit) bounded; on overflow it empties and waits for the next GOP start.
* :mod:`relay.queue` — :class:`ReaderQueue`: one reader's byte-bounded queue; on overflow it
  skips to the next keyframe, after ``max_skips`` skips the reader is dropped.
* :mod:`relay.registry` — :class:`PathRegistry`: one publisher per name, its readers, and the
  admission answers CONFLICT / NOTFOUND / LIMIT (:func:`admit`).
* :mod:`relay.counters` — :class:`RelayCounters` (skips/drops a server's queues count into) and
  :class:`RelayStats` (what the observability layer exports per server).

No I/O, no trio, no sockets, no threads: the protocol shells (``trio_core.rtmp``,
``trio_core.srt``, ``rtp.source``) own those. This package imports nothing of the project, so
``rtp/`` (which must never import ``trio_core/``) and ``trio_core/`` can both use it. Not
thread-safe: each instance belongs to one task or one thread.
"""

from .counters import RelayCounters, RelayStats
from .gop import GopCache, Unit
from .queue import Offer, ReaderQueue
from .registry import PathRegistry, Refused, admit

__all__ = ["GopCache", "Offer", "PathRegistry", "ReaderQueue", "Refused", "RelayCounters",
           "RelayStats", "Unit", "admit"]
