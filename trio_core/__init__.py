"""trio-core: a datarhei-Core-style restreaming server on trio with WebRTC (WHEP) playback."""

from trio_core.httpd import lean_imports as _lean_imports

_lean_imports.install()  # before anything imports Quart: no hypercorn stack loaded (memory)

__version__ = "0.1.0"
NAME = "trio-core"
