"""trio_core.storage.paths: paths are cleaned and escapes refused."""

from __future__ import annotations

import pytest

from trio_core.storage.paths import BadPath, clean_path


def test_clean_path_refuses_escapes() -> None:
    assert clean_path("a//b/./c.ts") == "/a/b/c.ts"
    assert clean_path("") == "/"
    for bad in ("/../etc/passwd", "a/../../b", "..", "a\\b", "a\x00b", "x" * 2000):
        with pytest.raises(BadPath):
            clean_path(bad)
