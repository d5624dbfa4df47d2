"""The server's own recent log lines, for ``GET /api/v3/log`` (Core's ``LogHandler`` shapes).

:class:`LogRing` is a :class:`logging.Handler` that keeps the last ``max_lines`` records
(Core's ``log.max_lines``, default 1000) as small dicts. :meth:`LogRing.console` renders them
like Core's console formatter without colours (``ts=... level=INFO component="..." msg="..."``
then the sorted extra fields, one string per event); :meth:`LogRing.raw` gives Core's
``format=raw`` objects (``ts``, ``component``, ``message``, ``caller`` plus the fields).

``install``/``uninstall`` attach it to the root logger; ``emit`` is synchronous, cheap and
thread-safe (a deque append under the handler lock), so it works from worker threads too.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from typing import Any

# Python level -> Core's level names (log.Level.String())
_LEVELS = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARN",
           logging.ERROR: "ERROR", logging.CRITICAL: "ERROR"}

# attributes every LogRecord has; anything else passed via ``extra=`` becomes a field
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _go_quote(text: str) -> str:
    """Close to Go's strconv.Quote: a double-quoted string with escapes."""
    return json.dumps(text, ensure_ascii=False)


def _rfc3339(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


class LogRing(logging.Handler):
    """Keeps the last ``max_lines`` log records (0 = keep none)."""

    def __init__(self, max_lines: int = 1000, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.events: deque[dict[str, Any]] = deque(maxlen=max(0, max_lines))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not break logging
            message = str(record.msg)
        fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        if record.exc_info and record.exc_info[1] is not None:
            fields["error"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        self.events.append({
            "time": record.created,
            "level": _LEVELS.get(record.levelno, record.levelname),
            "component": record.name,
            "message": message,
            "caller": f"{record.module}:{record.lineno}",
            "data": fields,
        })

    def console(self) -> list[str]:
        """Core's default (``format=console``) rendering, one string per event."""
        lines = []
        for event in list(self.events):
            parts = [f"ts={_rfc3339(event['time'])}", f"level={event['level']}",
                     f"component={_go_quote(event['component'])}"]
            if event["message"]:
                parts.append(f"msg={_go_quote(event['message'])}")
            for key in sorted(event["data"]):
                value = event["data"][key]
                if isinstance(value, str):
                    text = _go_quote(value)
                else:
                    try:
                        text = json.dumps(value)
                    except (TypeError, ValueError):
                        text = _go_quote(str(value))
                parts.append(f"{key}={text}")
            lines.append(" ".join(parts))
        return lines

    def raw(self) -> list[dict[str, Any]]:
        """Core's ``format=raw`` rendering: the fields plus ts, component, caller, message."""
        out = []
        for event in list(self.events):
            item: dict[str, Any] = {}
            for key, value in event["data"].items():
                try:
                    json.dumps(value)
                    item[key] = value
                except (TypeError, ValueError):
                    item[key] = str(value)
            item["ts"] = _rfc3339(event["time"])
            item["level"] = event["level"]
            item["component"] = event["component"]
            item["caller"] = event["caller"]
            if event["message"]:
                item["message"] = event["message"]
            out.append(item)
        return out

    def install(self) -> None:
        """Attach to the root logger."""
        logging.getLogger().addHandler(self)

    def uninstall(self) -> None:
        """Detach from the root logger."""
        logging.getLogger().removeHandler(self)
