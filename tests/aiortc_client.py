"""The aiortc WebRTC receiving client under the name the WHEP tests import.

Everything lives in :mod:`tests.aiortc_viewer` (the subprocess and the trio-side helper
:func:`run_aiortc_viewer`); this module re-exports it, and ``python -m tests.aiortc_client``
runs the same viewer.
"""

from __future__ import annotations

from tests.aiortc_viewer import main, run_aiortc_viewer

__all__ = ["main", "run_aiortc_viewer"]

if __name__ == "__main__":
    main()
