"""Which nodes of the cluster are compatible with each other (Core v17's node check).

Core v17's leader compares every node with itself each sync (``cluster/node/node.go``,
``checkCompatibility``): the Core version, the cluster-wide settings and — unless
``cluster.debug.disable_ffmpeg_check`` — the FFmpeg build. A node that differs is shown
``"degraded"`` with the first difference as its ``error``, and no process is placed on it.

trio-core has no leader (Redis is the authority), so every node decides the same thing from the
same registrations: each live node publishes a :func:`fingerprint` in its node document; the
**reference** is the largest group of nodes with equal fingerprints (a tie goes to the group of
the node that started first, then the smaller id), and every ``online`` node outside it is
marked ``degraded`` by :func:`mark_incompatible`. A node that is degraded takes no processes:
what it ran moves to compatible nodes (rendezvous over the healthy ones).

What is compared (Core's messages): ``version: actual: …, expected …``;
``config: <key>: actual: …, expected: …`` for ``cluster.lease_seconds``,
``cluster.debug.disable_ffmpeg_check``, ``api.auth.enable`` and, with auth on, the user name,
password and JWT secret (as SHA-256 digests: secrets never reach Redis), ``rtmp.enable`` (+
``rtmp.app``), ``srt.enable`` (+ ``srt.passphrase`` digest); ``skills: ffmpeg: version|compiler|
configuration expected: …, actual: …`` and ``skills: ffmpeg: libraries: …`` from
``ffmpeg -version``. Core also compares the filter/codec/format/protocol lists, which follow
from the build compared here, and the hardware devices and accelerators, which trio-core leaves
out (nodes with different hardware may share a cluster).

Pure functions over dicts; no I/O.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from typing import Any

__all__ = ["SETTING_NAMES", "compare", "fingerprint", "mark_incompatible", "reference_node"]

#: the settings :func:`fingerprint` reads
SETTING_NAMES = ("cluster.lease_seconds", "cluster.debug.disable_ffmpeg_check", "api.auth.enable",
                 "api.auth.username", "api.auth.password", "api.auth.jwt.secret", "rtmp.enable",
                 "rtmp.app", "srt.enable", "srt.passphrase")
_SECRETS = ("api.auth.username", "api.auth.password", "api.auth.jwt.secret", "srt.passphrase")


def _digest(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest() if value else ""


def fingerprint(config: Mapping[str, Any], ffmpeg_build: Mapping[str, Any],
                version: str) -> dict[str, Any]:
    """What this node publishes for the check (``config``: the settings, by dotted name;
    ``ffmpeg_build``: :func:`trio_core.ffmpeg.skills.parse_version` of ``ffmpeg -version``)."""
    settings: dict[str, Any] = {
        "cluster.lease_seconds": config.get("cluster.lease_seconds", 10),
        "cluster.debug.disable_ffmpeg_check":
            bool(config.get("cluster.debug.disable_ffmpeg_check", False)),
        "api.auth.enable": bool(config.get("api.auth.enable", False)),
        "rtmp.enable": bool(config.get("rtmp.enable", False)),
        "srt.enable": bool(config.get("srt.enable", False)),
    }
    if settings["api.auth.enable"]:
        for key in ("api.auth.username", "api.auth.password", "api.auth.jwt.secret"):
            settings[key] = _digest(str(config.get(key, "")))
    if settings["rtmp.enable"]:
        settings["rtmp.app"] = config.get("rtmp.app", "/")
    if settings["srt.enable"]:
        settings["srt.passphrase"] = _digest(str(config.get("srt.passphrase", "")))
    build = {key: ffmpeg_build.get(key, "") for key in ("version", "compiler", "configuration")}
    build["libraries"] = [f"{lib.get('name')} {lib.get('compiled')}/{lib.get('linked')}"
                          for lib in ffmpeg_build.get("libraries", [])]
    return {"version": version, "config": settings, "ffmpeg": build}


def _shown(key: str, value: Any) -> str:
    if key in _SECRETS:  # digests say only that they differ
        return "(set)" if value else "(empty)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def compare(node: Mapping[str, Any], reference: Mapping[str, Any]) -> str | None:
    """The first difference of ``node``'s fingerprint from ``reference``'s, worded as Core
    words it; None when compatible."""
    if node.get("version") != reference.get("version"):
        return f"version: actual: {node.get('version')}, expected {reference.get('version')}"
    mine, theirs = node.get("config") or {}, reference.get("config") or {}
    for key in sorted(set(mine) | set(theirs)):
        if mine.get(key) != theirs.get(key):
            return (f"config: {key}: actual: {_shown(key, mine.get(key))}, "
                    f"expected: {_shown(key, theirs.get(key))}")
    if theirs.get("cluster.debug.disable_ffmpeg_check"):
        return None
    build, expected = node.get("ffmpeg") or {}, reference.get("ffmpeg") or {}
    for key in ("version", "compiler", "configuration"):
        if build.get(key) != expected.get(key):
            return (f"skills: ffmpeg: {key} expected: {expected.get(key)}, "
                    f"actual: {build.get(key)}")
    if build.get("libraries") != expected.get("libraries"):
        missing = sorted(set(expected.get("libraries") or []) - set(build.get("libraries") or []))
        extra = sorted(set(build.get("libraries") or []) - set(expected.get("libraries") or []))
        return f"skills: ffmpeg: libraries: expected {missing or '-'}, actual {extra or '-'}"
    return None


def _key(fp: Mapping[str, Any]) -> str:
    return repr(sorted((k, repr(v)) for k, v in fp.items()))


def reference_node(nodes: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The id of a node of the reference group among ``nodes`` (id -> node document with a
    ``compat`` fingerprint): the largest group of equal fingerprints, a tie to the group of
    the earliest started node (then the smallest id). None when no node has a fingerprint."""
    docs = {nid: doc for nid, doc in nodes.items() if isinstance(doc.get("compat"), dict)}
    if not docs:
        return None
    sizes = Counter(_key(doc["compat"]) for doc in docs.values())
    return min(docs, key=lambda nid: (-sizes[_key(docs[nid]["compat"])],
                                      float(docs[nid].get("started_at", 0.0)), nid))


def mark_incompatible(live: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Mark the ``online`` nodes of ``live`` that differ from the reference ``degraded`` (their
    document's ``state``, with the difference as ``error``); returns {node id: error}. Nodes
    without a fingerprint (older versions) are compared by version only."""
    ref_id = reference_node(live)
    if ref_id is None:
        return {}
    reference = live[ref_id]["compat"]
    errors: dict[str, str] = {}
    for nid, doc in live.items():
        if doc.get("state", "online") != "online":
            continue
        fp = doc.get("compat")
        if not isinstance(fp, dict):
            fp = {"version": doc.get("version", ""), "config": reference.get("config"),
                  "ffmpeg": reference.get("ffmpeg")}
        error = compare(fp, reference)
        if error is not None:
            errors[nid] = error
            doc["state"] = "degraded"
            doc["error"] = error
    return errors
