"""trio_core.http.app: Core's arch and time spellings; the app answers ``GET /api`` as Core."""

from __future__ import annotations

import platform

from trio_core.http.app import CORE_APP, CORE_VERSION, build_arch, rfc3339


def test_build_arch_and_rfc3339_in_gos_spelling() -> None:
    system, arch = build_arch().split("/")
    assert system == platform.system().lower()
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert arch == "amd64"
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1_700_000_000.9) == "2023-11-14T22:13:20Z"  # seconds precision, UTC
    assert CORE_APP == "datarhei-core" and CORE_VERSION.count(".") == 2
