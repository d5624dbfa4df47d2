"""The process's one native sender pool: the fan-out engine that the WebRTC forwarder and
the RTMP relay share.

``acquire(workers)`` returns the shared :class:`rtp._fanout.Engine` (made by the first
holder with ``workers`` threads — None or 0: :func:`rtp.fanout.default_workers`, 1: no
thread, everything inline on the caller's thread — later holders get the same engine
whatever they ask for), or None without the native extension (no compiler, or
``RTP_FANOUT=python``). Every ``acquire`` is paired with one :func:`release` (in a
``finally``); the last release closes the engine, which stops and joins its threads, so the
pool lives exactly as long as the scopes that hold it. :func:`lease` is the context-manager
form. The WebRTC forwarder passes libsrtp's functions (``protect``/``dealloc``), which the
engine takes on if the RTMP relay made it first (it has no viewers then).

This module imports only the C extension (no pylibsrtp, no DTLS stack): a server that runs
RTMP without WebRTC loads no WebRTC code. Not cancellable (no checkpoint); ``release`` of
the last holder blocks the calling thread (GIL released) while the workers finish the
command each is running. Thread-safe (a lock), though trio-core calls it from its one trio
thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["NATIVE", "SINKS", "acquire", "current", "default_workers", "lease", "release"]


def default_workers() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _module() -> Any:
    if os.environ.get("RTP_FANOUT", "").lower() == "python":
        return None
    try:
        from . import _fanout  # type: ignore[attr-defined]
    except ImportError:
        return None
    if not hasattr(_fanout, "Engine"):
        return None
    return _fanout


_MODULE = _module()
#: True when the native engine is available (and not disabled by ``RTP_FANOUT=python``).
NATIVE = _MODULE is not None
#: True when the engine has RTMP sinks (``Engine.sink``/``group``/``hub``).
SINKS = NATIVE and hasattr(_MODULE, "Sink")
#: ring slots per worker (``rtp.fanout.RING_SLOTS``)
RING_SLOTS = 4096

_lock = threading.Lock()
_engine: Any = None
_holders = 0


def acquire(workers: int | None = None, *, protect: int = 0, dealloc: int = 0) -> Any:
    """The shared engine (see the module docstring), or None without the extension."""
    global _engine, _holders
    if not NATIVE:
        return None
    with _lock:
        if _engine is None:
            count = default_workers() if workers is None or workers <= 0 else workers
            _engine = _MODULE.Engine(protect, dealloc, count, RING_SLOTS)
        elif protect or dealloc:
            _engine.set_srtp(protect, dealloc)
        _holders += 1
        return _engine


def current() -> Any:
    """The shared engine while someone holds it (for metrics), else None."""
    return _engine


def release(engine: Any) -> None:
    """One holder is done; the last one closes the engine (joins its threads)."""
    global _engine, _holders
    if engine is None:
        return
    with _lock:
        if engine is not _engine:  # not the shared one (closed already): make sure
            engine.close()
            return
        _holders -= 1
        if _holders > 0:
            return
        _engine = None
        _holders = 0
    engine.close()


@contextmanager
def lease(workers: int | None = None) -> Iterator[Any]:
    """``with lease(workers) as engine:`` — :func:`acquire` … :func:`release`."""
    engine = acquire(workers)
    try:
        yield engine
    finally:
        release(engine)
