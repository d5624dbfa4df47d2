"""Path registry: one publisher per name, its readers, and the admission answers.

Contract:

* :func:`admit` is the rule, pure over counts (so a thread that only holds a snapshot — libsrt's
  handshake callback — applies the same rule): a total limit first (``LIMIT``), then a publisher
  needs a free name (``CONFLICT``), a reader needs a published name (``NOTFOUND``) with room
  for one more reader (``LIMIT``). It raises :class:`Refused` (``status``, ``message``,
  ``name``); ``None`` limits are unlimited. The messages are Core's (``srt/srt.go``).
* :class:`PathRegistry` keeps ``publishers`` (name -> publisher) and ``readers`` (name ->
  {key: reader}, insertion ordered, no empty entries) and applies :func:`admit` in
  :meth:`~PathRegistry.publish` and :meth:`~PathRegistry.add_reader`; nothing is registered
  when they raise. :meth:`~PathRegistry.unpublish` frees the name and hands back the readers
  that went with it (the caller ends them). Unpublishing a publisher that no longer holds the
  name changes nothing (a late cleanup never removes its successor).

A relay may keep its readers elsewhere (RTMP keeps them on its channel, the fan-out) and use
the registry for its publishers only. Sans-IO, not thread-safe.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["PathRegistry", "Refused", "admit"]

P = TypeVar("P")
R = TypeVar("R")

CONFLICT = "CONFLICT"
NOTFOUND = "NOTFOUND"
LIMIT = "LIMIT"


class Refused(Exception):
    """A publisher or reader cannot be admitted: ``status`` CONFLICT / NOTFOUND / LIMIT."""

    def __init__(self, status: str, message: str, name: str) -> None:
        super().__init__(f"{status} {name!r}: {message}")
        self.status = status
        self.message = message
        self.name = name


def admit(name: str, *, publish: bool, published: bool, readers: int, total: int,
          max_total: int | None = None, max_readers: int | None = None) -> None:
    """Raise :class:`Refused` unless one more publisher (``publish``) or reader of ``name`` may
    join, given whether ``name`` is ``published``, its ``readers`` and the ``total`` count."""
    if max_total is not None and total >= max_total:
        raise Refused(LIMIT, "too many connections", name)
    if publish:
        if published:
            raise Refused(CONFLICT, "already publishing", name)
        return
    if not published:
        raise Refused(NOTFOUND, "no publisher for this resource found", name)
    if max_readers is not None and readers >= max_readers:
        raise Refused(LIMIT, "too many subscribers", name)


class PathRegistry(Generic[P, R]):
    """Publishers and readers by name (see the module docstring)."""

    def __init__(self, *, max_total: int | None = None, max_readers: int | None = None) -> None:
        self.max_total = max_total
        self.max_readers = max_readers
        self.publishers: dict[str, P] = {}
        self.readers: dict[str, dict[Hashable, R]] = {}
        self.reader_count = 0

    @property
    def total(self) -> int:
        """Publishers plus readers registered."""
        return len(self.publishers) + self.reader_count

    def check(self, name: str, *, publish: bool, extra: int = 0) -> None:
        """Raise :class:`Refused` unless a publisher/reader of ``name`` may join now;
        ``extra`` counts connections the caller holds outside the registry."""
        admit(name, publish=publish, published=name in self.publishers,
              readers=len(self.readers.get(name, ())), total=self.total + extra,
              max_total=self.max_total, max_readers=self.max_readers)

    def publish(self, name: str, publisher: P) -> None:
        """Register the publisher of ``name`` (:class:`Refused` CONFLICT / LIMIT)."""
        self.check(name, publish=True)
        self.publishers[name] = publisher

    def get(self, name: str) -> P | None:
        """The publisher of ``name``, None when nobody publishes it."""
        return self.publishers.get(name)

    def names(self) -> list[str]:
        """Published names, sorted."""
        return sorted(self.publishers)

    def unpublish(self, name: str, publisher: P) -> list[R]:
        """``publisher`` leaves ``name``: the name is free, its readers (returned, in the order
        they joined) are forgotten. Nothing happens when ``publisher`` does not hold it."""
        if self.publishers.get(name) is not publisher:
            return []
        del self.publishers[name]
        gone = self.readers.pop(name, None)
        if not gone:
            return []
        self.reader_count -= len(gone)
        return list(gone.values())

    def add_reader(self, name: str, key: Hashable, reader: R) -> None:
        """Register a reader of ``name`` under ``key`` (:class:`Refused` NOTFOUND / LIMIT)."""
        self.check(name, publish=False)
        readers = self.readers.setdefault(name, {})
        if key in readers:
            raise ValueError(f"reader {key!r} of {name!r} already registered")
        readers[key] = reader
        self.reader_count += 1

    def remove_reader(self, name: str, key: Hashable) -> R | None:
        """Forget a reader; returns it (None when unknown)."""
        readers = self.readers.get(name)
        if readers is None or key not in readers:
            return None
        reader = readers.pop(key)
        self.reader_count -= 1
        if not readers:
            del self.readers[name]
        return reader

    def readers_of(self, name: str) -> list[R]:
        """The readers of ``name`` in the order they joined."""
        readers = self.readers.get(name)
        return list(readers.values()) if readers else []
