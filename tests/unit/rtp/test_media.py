"""rtp.media: the protocols peer/fanout/resend are typed against describe what rtp.source
really provides (a member missing from the implementation fails here, not in a viewer)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from rtp.media import SourcePacket, SourceView, TrackView
from rtp.source import MediaPacket, Source, TrackState


def members(protocol: type) -> set[str]:
    """Attributes and methods a Protocol declares (not the ones of ``object``/``Protocol``)."""
    names = set(getattr(protocol, "__annotations__", {}))
    names |= {n for n, v in vars(protocol).items()
              if not n.startswith("_") and inspect.isfunction(v)}
    return names


def test_protocols_declare_something() -> None:
    assert members(SourcePacket) >= {"kind", "seq", "ts", "data", "keyframe", "arrival"}
    assert {"gop", "lookup", "rtp_time"} <= members(TrackView)
    assert {"state", "detach", "fanout", "listeners"} <= members(SourceView)


def test_media_packet_is_a_source_packet() -> None:
    pkt = MediaPacket("video", 1, 90000, b"\x80", True, 0.0)
    for name in members(SourcePacket):
        assert hasattr(pkt, name), name


@pytest.mark.parametrize("kind", ["video", "audio"])
def test_track_state_is_a_track_view(kind: str) -> None:
    state: Any = TrackState(kind)
    for name in members(TrackView):
        assert hasattr(state, name), name
    assert state.lookup(0, 0.0) is None  # nothing received yet


def test_source_is_a_source_view() -> None:
    for name in members(SourceView):
        declared = name in vars(Source) or name in inspect.signature(Source.__init__).parameters
        assigned = f"self.{name}" in inspect.getsource(Source.__init__)
        assert declared or assigned, name
