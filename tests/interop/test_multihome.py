"""Bound to all interfaces, the mux answers from the address each viewer sent to (issue 13).

Runs ``tests/helpers/multihome_session.py`` in a private network namespace (``unshare -n``, root,
iproute2): two server addresses per family on one interface, a viewer socket connected to
each, which — like Firefox — takes datagrams only from the address it sent to.
"""

from __future__ import annotations

import json
import sys

import pytest
import trio

pytestmark = [pytest.mark.root]


async def test_replies_and_media_leave_from_the_address_the_viewer_used() -> None:
    argv = ["unshare", "-n", sys.executable, "-m", "tests.helpers.multihome_session"]
    with trio.fail_after(120):
        proc = await trio.run_process(argv, capture_stdout=True, capture_stderr=True,
                                      check=False)
    lines = proc.stdout.decode().strip().splitlines()
    assert lines, proc.stderr.decode()[-3000:]
    runs = json.loads(lines[-1])
    assert [r["bind"] for r in runs] == ["0.0.0.0", "::"]
    for run in runs:
        servers = [v["server"] for v in run["viewers"]]
        assert set(servers) <= set(run["mux_addresses"]), run  # one socket per address
        for viewer in run["viewers"]:
            assert viewer["error"] is None, run
            assert viewer["stun"] is not None and viewer["dtls"], viewer
            assert viewer["media"] >= 10, viewer
            assert viewer["sources"] == [viewer["server"]], viewer
