"""trio_core.srt.binding: loading libsrt names what is missing."""

from __future__ import annotations

import pytest


def test_load_names_what_is_missing() -> None:
    from trio_core.srt.binding import SrtUnavailable, load

    with pytest.raises(SrtUnavailable) as info:
        load(names=("libsrt-does-not-exist.so.9",), finder=lambda name: None)
    assert "libsrt1.5-openssl" in str(info.value)
    assert "libsrt-does-not-exist.so.9" in str(info.value)
    lib = load()  # the real one (installed by .ci/run)
    assert lib.version.startswith("1.")
