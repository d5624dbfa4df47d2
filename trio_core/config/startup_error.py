"""Why the server refuses to start: :class:`StartupError` and its kinds.

Raised before anything runs (bad bind policy, no FFmpeg, an unusable setting of a subsystem);
the CLI prints the message and exits with 2. Imported by the composition root
(:mod:`trio_core.server`) and by every subsystem that checks its settings, so none of them has
to import the module above it.
"""

from __future__ import annotations

__all__ = ["PublicBindRefused", "StartupError"]


class StartupError(RuntimeError):
    """The server refuses to start (bad bind policy, no FFmpeg, …); the CLI exits with 2."""


class PublicBindRefused(StartupError):
    """Non-loopback bind with auth disabled and without ``api.allow_public_bind``."""
