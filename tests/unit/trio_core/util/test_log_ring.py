"""trio_core.util.log_ring: the last N log records, rendered as Core's console and raw formats."""

from __future__ import annotations

import logging

from trio_core.util.log_ring import LogRing


def test_keeps_the_last_records_and_renders_them_as_core() -> None:
    ring = LogRing(max_lines=2)
    logger = logging.getLogger("trio_core.test_log_ring")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(ring)
    try:
        logger.info("dropped")
        logger.warning("disk %s", "full", extra={"path": "/data", "free": 0})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.error("failed", exc_info=True)
    finally:
        logger.removeHandler(ring)
    assert [e["message"] for e in ring.events] == ["disk full", "failed"]
    warn, error = ring.console()
    assert "level=WARN" in warn and 'component="trio_core.test_log_ring"' in warn
    assert 'msg="disk full"' in warn and 'path="/data"' in warn and "free=0" in warn
    assert warn.startswith("ts=") and warn.index("free=") < warn.index("path=")  # sorted keys
    assert 'error="ValueError: boom"' in error and "level=ERROR" in error
    raw = ring.raw()
    assert raw[0]["level"] == "WARN" and raw[0]["path"] == "/data" and raw[0]["free"] == 0
    assert LogRing(max_lines=0).events.maxlen == 0
