"""trio_core.cluster.compatibility: fingerprints, Core's wording of a difference, the reference
group, marking degraded nodes."""

from __future__ import annotations

import json
from typing import Any

from trio_core.cluster.compatibility import (
    compare,
    fingerprint,
    mark_incompatible,
    reference_node,
)

BUILD = {"version": "5.1.9", "compiler": "gcc 12", "configuration": "--enable-gpl",
         "libraries": [{"name": "libavcodec", "compiled": "59.37.100", "linked": "59.37.100"}]}
CONFIG = {"cluster.lease_seconds": 10, "cluster.debug.disable_ffmpeg_check": False,
          "api.auth.enable": True, "api.auth.username": "admin", "api.auth.password": "pw",
          "api.auth.jwt.secret": "s3cret", "rtmp.enable": True, "rtmp.app": "/live",
          "srt.enable": False, "srt.passphrase": ""}


def fp(version: str = "1.0", build: dict[str, Any] | None = None, **config: Any) -> dict[str, Any]:
    return fingerprint({**CONFIG, **config}, build or BUILD, version)


def test_secrets_never_leave_the_node_in_clear() -> None:
    text = json.dumps(fp(**{"srt.enable": True, "srt.passphrase": "srtpass123"}))
    for secret in ("pw", "s3cret", "srtpass123", "admin"):
        assert f'"{secret}"' not in text
    assert fp() == fp() and fp()["config"]["api.auth.password"].startswith("sha256:")


def test_differences_are_worded_as_core_words_them() -> None:
    assert compare(fp(), fp()) is None
    assert compare(fp("1.1"), fp()) == "version: actual: 1.1, expected 1.0"
    assert compare(fp(**{"cluster.lease_seconds": 5}), fp()) == \
        "config: cluster.lease_seconds: actual: 5, expected: 10"
    assert compare(fp(**{"api.auth.password": "other"}), fp()) == \
        "config: api.auth.password: actual: (set), expected: (set)"
    assert compare(fp(**{"rtmp.app": "/"}), fp()) == "config: rtmp.app: actual: /, expected: /live"
    other = dict(BUILD, version="7.1")
    assert compare(fp(build=other), fp()) == "skills: ffmpeg: version expected: 5.1.9, actual: 7.1"
    relinked = dict(BUILD, libraries=[{"name": "libavcodec", "compiled": "59.37.100",
                                       "linked": "59.37.101"}])
    assert compare(fp(build=relinked), fp()).startswith("skills: ffmpeg: libraries: ")


def test_auth_off_ignores_credentials_and_the_switch_skips_only_ffmpeg() -> None:
    off = {"api.auth.enable": False}
    assert compare(fp(**off, **{"api.auth.password": "x"}), fp(**off)) is None
    skip = {"cluster.debug.disable_ffmpeg_check": True}
    assert compare(fp(build=dict(BUILD, version="7.1"), **skip), fp(**skip)) is None
    assert compare(fp("2.0", **skip), fp(**skip)) is not None
    assert compare(fp(**skip), fp()) == ("config: cluster.debug.disable_ffmpeg_check: "
                                         "actual: true, expected: false")


def doc(compat: dict[str, Any] | None, started: float, state: str = "online") -> dict[str, Any]:
    return {"compat": compat, "started_at": started, "state": state, "version": "1.0"}


def test_the_majority_is_the_reference_and_a_tie_goes_to_the_oldest() -> None:
    odd = fp(build=dict(BUILD, version="7.1"))
    live = {"a": doc(odd, 1.0), "b": doc(fp(), 2.0), "c": doc(fp(), 3.0)}
    assert reference_node(live) == "b"
    errors = mark_incompatible(live)
    assert errors == {"a": "skills: ffmpeg: version expected: 5.1.9, actual: 7.1"}
    assert live["a"]["state"] == "degraded" and live["a"]["error"] == errors["a"]
    assert live["b"]["state"] == live["c"]["state"] == "online"

    tie = {"x": doc(fp(), 5.0), "y": doc(odd, 4.0)}
    assert reference_node(tie) == "y"
    assert set(mark_incompatible(tie)) == {"x"}


def test_drained_nodes_stay_as_they_are_and_old_nodes_are_compared_by_version() -> None:
    odd = fp(build=dict(BUILD, version="7.1"))
    live = {"a": doc(fp(), 1.0), "b": doc(fp(), 2.0), "m": doc(odd, 3.0, state="maintenance"),
            "old": {"started_at": 0.5, "state": "online", "version": "0.9"}}
    assert mark_incompatible(live) == {"old": "version: actual: 0.9, expected 1.0"}
    assert live["m"]["state"] == "maintenance"
    assert mark_incompatible({}) == {}
