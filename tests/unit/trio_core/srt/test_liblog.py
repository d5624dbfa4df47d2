"""trio_core.srt.liblog: libsrt's log lines are classified and filtered."""

from __future__ import annotations


def test_libsrt_log_lines_are_filtered() -> None:
    from trio_core.srt.liblog import classify

    got = classify(5, "SRT.cn", "Listener managed the connection request from: "
                   "127.0.0.1:5000 result:INVALID")
    assert got == "SRT handshake from 127.0.0.1:5000 rejected"
    got = classify(4, "processConnectRequest: ",
                   "processConnectRequest: rsp(REJECT): 1010 - Incorrect passphrase")
    assert got == "libsrt: processConnectRequest: rsp(REJECT): 1010 - Incorrect passphrase"
    # the server's own non-blocking accept, and per-connection notices: not logged
    assert classify(3, "SRT.cn", "srt_accept: no pending connection available at the moment") is None
    assert classify(5, "SRT.cn", "PASSING request from: 127.0.0.1:5000 to agent:1") is None
