"""Only the optional C accelerator of the RTP fan-out (everything else is in pyproject.toml).

``rtp/_fanout.c`` is built when a C compiler and the Python headers are there; without them
the build goes on and ``rtp.fanout`` uses its pure-Python loop (same behaviour, slower).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("rtp._fanout", ["rtp/_fanout.c"], optional=True)])
