"""Engine timings for tests: the production stop grace (3 s after ``q``, 2 s after SIGTERM) is
what an FFmpeg that probes an input which never comes needs to be killed — it acts on neither
``q`` nor SIGTERM meanwhile. Tests about something else (stale timeout, reconnects) shrink it;
tests about the stop sequence itself keep the defaults."""

from __future__ import annotations

from trio_core.engine.process import EngineTimings

#: stop grace 0.5 s + 0.5 s, watchdog every 0.25 s
FAST_STOP = EngineTimings(grace_after_q=0.5, grace_after_term=0.5, watch_interval=0.25,
                          stop_poll=0.05)
