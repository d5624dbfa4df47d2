"""rtp.admission: each limit refuses the next viewer.

rtp/admission.py: a viewer still connecting holds a viewer slot (issue 22 item 10).
"""

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


def test_each_limit_refuses_the_next_viewer() -> None:
    limits = AdmissionLimits(max_viewers=5, max_viewers_per_source=3, max_pending=4,
                             max_pending_per_source=3, max_pending_per_client=2)
    ok = {"a": [FakePeer(True)], "b": [FakePeer(False, "10.0.0.1")]}
    check_admission(limits, ok, "a", "10.0.0.1")  # under every limit

    cases = {
        "max_pending_per_client": {"a": [FakePeer(False, "10.0.0.9")] * 2},
        "max_pending_per_process": {"a": [FakePeer(False, f"10.0.0.{i}") for i in range(3)]},
        "max_pending": {"a": [FakePeer(False, "1.1.1.1")] * 2,
                        "b": [FakePeer(False, "2.2.2.2")] * 2},
        "max_viewers_per_process": {"a": [FakePeer(True)] * 3},
        "max_viewers": {"a": [FakePeer(True)] * 2, "b": [FakePeer(True)] * 3},
    }
    for name, peers in cases.items():
        with pytest.raises(Overloaded) as info:
            check_admission(limits, peers, "a", "10.0.0.9")
        assert info.value.limit == name
        assert f"webrtc.{name}" in str(info.value)
        assert info.value.retry_after > 0
    # closed sessions and other clients' sessions do not count against a client
    check_admission(limits, {"a": [FakePeer(False, "10.0.0.9", closed=True)] * 5,
                             "b": [FakePeer(False, "10.0.0.8")] * 2}, "a", "10.0.0.9")
    # 0 = no limit
    check_admission(AdmissionLimits.unlimited(), {"a": [FakePeer(True)] * 10_000}, "a", "x")




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
