"""rtp/admission.py: a viewer still connecting holds a viewer slot (issue 22 item 10)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from rtp.admission import AdmissionLimits, check_admission
from rtp.errors import Overloaded


@dataclass
class FakePeer:
    live: bool
    client: str = ""
    closed: bool = False


def test_pending_viewers_count_toward_the_viewer_limits() -> None:
    limits = AdmissionLimits(max_viewers=3, max_viewers_per_source=2, max_pending=0,
                             max_pending_per_source=0, max_pending_per_client=0)
    # 2 connected on "a" + 1 connecting on "b" = 3 viewers: a 4th anywhere is refused
    peers = {"a": [FakePeer(True), FakePeer(True)], "b": [FakePeer(False, "10.0.0.1")]}
    with pytest.raises(Overloaded) as info:
        check_admission(limits, peers, "c", "10.0.0.2")
    assert info.value.limit == "max_viewers"
    # 1 connected + 1 connecting on "b": a 3rd viewer of "b" is refused
    peers = {"b": [FakePeer(True), FakePeer(False, "10.0.0.1")]}
    with pytest.raises(Overloaded) as info:
        check_admission(limits, peers, "b", "10.0.0.2")
    assert info.value.limit == "max_viewers_per_process"
    # closed sessions hold nothing
    check_admission(limits, {"b": [FakePeer(True), FakePeer(False, closed=True)]}, "b", "x")
