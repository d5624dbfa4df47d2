"""Build steps beyond pyproject.toml: the optional C accelerator of the RTP fan-out, and the
browser libraries of the pages (hls.js from npm).

``rtp/_fanout.c`` is built when a C compiler and the Python headers are there; without them
the build goes on and ``rtp.fanout`` uses its pure-Python loop (same behaviour, slower).

hls.js (the dashboard's HLS player) is an npm dependency pinned in ``web/package.json`` /
``web/package-lock.json``: ``build_py`` runs ``npm ci`` in ``web/`` and copies
``hls.min.js`` into ``trio_core/static/`` (git-ignored; nothing is fetched at run time).
The same ``npm ci`` brings the tests' devDependencies (medooze's ``whip-whep`` WHEP client,
used from ``web/node_modules/`` by ``tests/interop/test_interop.py``): tests fetch nothing.
Without npm the build goes on with a warning, and the HLS player page says that hls.js is
missing (browsers with native HLS still play).
"""

import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
WEB = os.path.join(HERE, "web")
HLS_SOURCE = os.path.join(WEB, "node_modules", "hls.js", "dist", "hls.min.js")
HLS_TARGET = os.path.join(HERE, "trio_core", "static", "hls.min.js")
#: every package web/package-lock.json pins, by a file that shows it is installed
NPM_INSTALLED = (HLS_SOURCE, os.path.join(WEB, "node_modules", "whip-whep", "whep.js"))


def fetch_web_assets() -> None:
    """npm ci in web/ and copy hls.min.js into trio_core/static (skipped when up to date)."""
    lock = os.path.join(WEB, "package-lock.json")
    if not os.path.exists(lock):
        return
    installed = all(os.path.exists(path) for path in NPM_INSTALLED)
    if (installed and os.path.exists(HLS_TARGET)
            and os.path.getmtime(HLS_TARGET) >= os.path.getmtime(lock)):
        return
    npm = shutil.which("npm")
    if npm is None:
        print("warning: npm not found; the HLS player has no hls.js "
              "(apt-get install -y npm, then reinstall)", file=sys.stderr)
        return
    if not installed:
        result = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--include=dev",
                                 "--prefix", WEB], check=False)
        if result.returncode != 0 or not os.path.exists(HLS_SOURCE):
            print("warning: npm ci in web/ failed; the HLS player has no hls.js", file=sys.stderr)
            return
    shutil.copyfile(HLS_SOURCE, HLS_TARGET)


class BuildPyWithWebAssets(build_py):
    def run(self) -> None:
        fetch_web_assets()
        super().run()


setup(
    ext_modules=[Extension("rtp._fanout", ["rtp/_fanout.c"], depends=["rtp/srtp_gcm.h"],
                           optional=True)],
    cmdclass={"build_py": BuildPyWithWebAssets},
)
