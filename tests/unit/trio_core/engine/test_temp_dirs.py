"""trio_core.engine.temp_dirs: an owned temp dir names its owner."""

from __future__ import annotations

import os
from pathlib import Path

from trio_core.engine.temp_dirs import make_owned_tempdir, owner_of
from trio_core.ffmpeg.procfs import read_proc_stat

WEBRTC_PREFIX = "trio-core-webrtc-"


def test_owned_tempdir_names_its_owner(tmp_path: Path) -> None:
    path = make_owned_tempdir(WEBRTC_PREFIX, str(tmp_path))
    me = read_proc_stat(os.getpid())
    assert me is not None
    assert owner_of(os.path.basename(path), WEBRTC_PREFIX) == (os.getpid(), me.start_time)
    assert owner_of(f"{WEBRTC_PREFIX}k2j4h5g6", WEBRTC_PREFIX) is None
