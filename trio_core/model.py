"""Process configuration model (datarhei Core ``ProcessConfig`` shape) with strict validation.

``ProcessConfig.from_json(obj)`` validates an API/store object and raises
``ConfigError(field, message)`` where ``field`` is a path such as ``output[1].address`` or
``limits.cpu_usage``. ``to_json()`` returns datarhei's JSON shape (same field names) plus our
``webrtc`` block. Unknown keys are **rejected** (at top level and inside ``input[]``/``output[]``,
``limits``, ``webrtc`` and ``cleanup[]``) so that typos such as ``reconect`` do not pass
silently. ``null`` for an optional field means "use the default". Placeholders are kept raw:
resolution happens on a copy at each start (see :mod:`trio_core.placeholders`).

Pure data, no I/O.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ConfigError",
    "IOConfig",
    "Limits",
    "ProcessConfig",
    "WebRTCOptions",
    "generate_id",
]

_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"  # shortuuid's 57 symbols


def generate_id() -> str:
    """A random 22-character id in shortuuid's alphabet (like datarhei's ``shortuuid.New()``)."""
    value = uuid.uuid4().int
    out = []
    for _ in range(22):
        value, digit = divmod(value, len(_ALPHABET))
        out.append(_ALPHABET[digit])
    return "".join(out)


class ConfigError(ValueError):
    """An invalid process config. ``field`` is the path of the offending value ("" = whole object)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


# -- typed readers -------------------------------------------------------------------------------


def _path(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _check_keys(obj: dict[str, Any], allowed: set[str], prefix: str) -> None:
    for key in obj:
        if key not in allowed:
            raise ConfigError(_path(prefix, str(key)), "unknown field")


def _str(obj: dict[str, Any], key: str, prefix: str, default: str = "") -> str:
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ConfigError(_path(prefix, key), "must be a string")
    return value


def _bool(obj: dict[str, Any], key: str, prefix: str, default: bool) -> bool:
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(_path(prefix, key), "must be a boolean")
    return value


def _int(obj: dict[str, Any], key: str, prefix: str, default: int = 0, *, minimum: int = 0,
         maximum: int | None = None) -> int:
    value = obj.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(_path(prefix, key), "must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ConfigError(_path(prefix, key), "must be an integer")
        value = int(value)
    if value < minimum:
        raise ConfigError(_path(prefix, key), f"must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(_path(prefix, key), f"must be <= {maximum}")
    return value


def _float(obj: dict[str, Any], key: str, prefix: str, default: float = 0.0) -> float:
    value = obj.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(_path(prefix, key), "must be a number")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(_path(prefix, key), "must be a finite number")
    if value < 0:
        raise ConfigError(_path(prefix, key), "must be >= 0")
    return value


def _str_list(obj: dict[str, Any], key: str, prefix: str) -> list[str]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(_path(prefix, key), "must be a list of strings")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ConfigError(f"{_path(prefix, key)}[{i}]", "must be a string")
    return list(value)


def _object(obj: dict[str, Any], key: str, prefix: str) -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(_path(prefix, key), "must be an object")
    return value


# -- model ---------------------------------------------------------------------------------------


_CLEANUP_KEYS = {"pattern", "max_files", "max_file_age_seconds", "purge_on_delete"}


def _cleanup(value: Any, prefix: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(prefix, "must be a list of objects")
    rules: list[dict[str, Any]] = []
    for i, rule in enumerate(value):
        where = f"{prefix}[{i}]"
        if not isinstance(rule, dict):
            raise ConfigError(where, "must be an object")
        _check_keys(rule, _CLEANUP_KEYS, where)
        pattern = _str(rule, "pattern", where)
        if not pattern.strip():
            raise ConfigError(f"{where}.pattern", "is required")
        rules.append({
            "pattern": pattern,
            "max_files": _int(rule, "max_files", where),
            "max_file_age_seconds": _int(rule, "max_file_age_seconds", where),
            "purge_on_delete": _bool(rule, "purge_on_delete", where, False),
        })
    return rules


@dataclass
class IOConfig:
    """One input or output: ``options`` go before ``-i address`` (input) / before ``address`` (output).

    ``cleanup`` (datarhei's output cleanup rules) is accepted and kept for outputs only.
    """

    id: str
    address: str
    options: list[str] = field(default_factory=list)
    cleanup: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self, *, output: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "address": self.address, "options": list(self.options)}
        if output:
            out["cleanup"] = copy.deepcopy(self.cleanup)
        return out


@dataclass
class Limits:
    """Resource limits; 0 disables a limit. cpu_usage is percent of the whole machine."""

    cpu_usage: float = 0.0
    memory_mbytes: int = 0
    waitfor_seconds: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"cpu_usage": self.cpu_usage, "memory_mbytes": self.memory_mbytes,
                "waitfor_seconds": self.waitfor_seconds}


WEBRTC_VIDEO_CODECS = ("h264", "vp8")


@dataclass
class WebRTCOptions:
    """Per-process WebRTC egress options (consumed by the WebRTC hook, not by the engine)."""

    enabled: bool = False
    video_pt: int = 96
    audio_pt: int = 111
    force_transcode: bool = False
    #: Optional viewer token: WHEP accepts ``Authorization: Bearer <token>`` or ``?token=``
    #: for this process without API credentials (a public player link).
    token: str = ""
    #: Video codecs to offer viewers ("h264", "vp8"); empty = one leg, chosen automatically.
    #: A codec the first leg does not produce gets a second, transcoded leg.
    video_codecs: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "video_pt": self.video_pt, "audio_pt": self.audio_pt,
                "force_transcode": self.force_transcode, "token": self.token,
                "video_codecs": list(self.video_codecs)}


_TOP_KEYS = {
    "id", "type", "reference", "input", "output", "options", "reconnect",
    "reconnect_delay_seconds", "autostart", "stale_timeout_seconds", "limits", "webrtc",
}


@dataclass
class ProcessConfig:
    """A process configuration as stored and returned (placeholders unresolved)."""

    id: str
    input: list[IOConfig]
    output: list[IOConfig]
    type: str = "ffmpeg"
    reference: str = ""
    options: list[str] = field(default_factory=list)
    reconnect: bool = False
    reconnect_delay_seconds: int = 0
    autostart: bool = True
    stale_timeout_seconds: int = 0
    limits: Limits = field(default_factory=Limits)
    webrtc: WebRTCOptions = field(default_factory=WebRTCOptions)

    @classmethod
    def from_json(cls, obj: Any) -> ProcessConfig:
        """Validate ``obj`` (a decoded JSON object) strictly; raises ConfigError naming the field."""
        if not isinstance(obj, dict):
            raise ConfigError("", "the process config must be a JSON object")
        _check_keys(obj, _TOP_KEYS, "")
        process_id = _str(obj, "id", "").strip()
        if not process_id:
            process_id = generate_id()
        ptype = _str(obj, "type", "").strip() or "ffmpeg"
        if ptype != "ffmpeg":
            raise ConfigError("type", f"unsupported process type {ptype!r} (only 'ffmpeg')")
        inputs = cls._io_list(obj, "input")
        outputs = cls._io_list(obj, "output")
        limits_obj = _object(obj, "limits", "")
        _check_keys(limits_obj, {"cpu_usage", "memory_mbytes", "waitfor_seconds"}, "limits")
        limits = Limits(
            cpu_usage=_float(limits_obj, "cpu_usage", "limits"),
            memory_mbytes=_int(limits_obj, "memory_mbytes", "limits"),
            waitfor_seconds=_int(limits_obj, "waitfor_seconds", "limits"),
        )
        webrtc_obj = _object(obj, "webrtc", "")
        _check_keys(webrtc_obj, {"enabled", "video_pt", "audio_pt", "force_transcode", "token",
                                 "video_codecs"}, "webrtc")
        webrtc = WebRTCOptions(
            enabled=_bool(webrtc_obj, "enabled", "webrtc", False),
            video_pt=_int(webrtc_obj, "video_pt", "webrtc", 96, minimum=96, maximum=127),
            audio_pt=_int(webrtc_obj, "audio_pt", "webrtc", 111, minimum=96, maximum=127),
            force_transcode=_bool(webrtc_obj, "force_transcode", "webrtc", False),
            token=_str(webrtc_obj, "token", "webrtc", ""),
            video_codecs=_str_list(webrtc_obj, "video_codecs", "webrtc"),
        )
        bad = [c for c in webrtc.video_codecs if c not in WEBRTC_VIDEO_CODECS]
        if bad or len(set(webrtc.video_codecs)) != len(webrtc.video_codecs):
            raise ConfigError("webrtc.video_codecs",
                              f"a list of distinct values from {', '.join(WEBRTC_VIDEO_CODECS)}"
                              f", not {webrtc.video_codecs!r}")
        if webrtc.audio_pt == webrtc.video_pt:
            raise ConfigError("webrtc.audio_pt", "must differ from webrtc.video_pt")
        return cls(
            id=process_id,
            type=ptype,
            reference=_str(obj, "reference", ""),
            input=inputs,
            output=outputs,
            options=_str_list(obj, "options", ""),
            reconnect=_bool(obj, "reconnect", "", False),
            reconnect_delay_seconds=_int(obj, "reconnect_delay_seconds", ""),
            autostart=_bool(obj, "autostart", "", True),
            stale_timeout_seconds=_int(obj, "stale_timeout_seconds", ""),
            limits=limits,
            webrtc=webrtc,
        )

    @staticmethod
    def _io_list(obj: dict[str, Any], key: str) -> list[IOConfig]:
        value = obj.get(key)
        if value is None or (isinstance(value, list) and not value):
            raise ConfigError(key, f"at least one {key} is required")
        if not isinstance(value, list):
            raise ConfigError(key, "must be a list of objects")
        allowed = {"id", "address", "options", "cleanup"}
        items: list[IOConfig] = []
        for i, item in enumerate(value):
            where = f"{key}[{i}]"
            if not isinstance(item, dict):
                raise ConfigError(where, "must be an object")
            _check_keys(item, allowed, where)
            address = _str(item, "address", where).strip()
            if not address:
                raise ConfigError(f"{where}.address", "is required and must not be empty")
            cleanup = _cleanup(item.get("cleanup"), f"{where}.cleanup")
            items.append(IOConfig(
                id=_str(item, "id", where).strip(),
                address=address,
                options=_str_list(item, "options", where),
                cleanup=cleanup if key == "output" else [],
            ))
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.id:
                if item.id in seen:
                    raise ConfigError(f"{key}[{i}].id", f"the {key} ID {item.id!r} is already in use")
                seen.add(item.id)
        for i, item in enumerate(items):
            if not item.id:
                n = i
                while f"{key}_{n}" in seen:
                    n += 1
                item.id = f"{key}_{n}"
                seen.add(item.id)
        return items

    def to_json(self) -> dict[str, Any]:
        """datarhei's ProcessConfig JSON (plus ``webrtc``); a fresh object each call."""
        return {
            "id": self.id,
            "type": self.type,
            "reference": self.reference,
            "input": [io.to_json(output=False) for io in self.input],
            "output": [io.to_json(output=True) for io in self.output],
            "options": list(self.options),
            "reconnect": self.reconnect,
            "reconnect_delay_seconds": self.reconnect_delay_seconds,
            "autostart": self.autostart,
            "stale_timeout_seconds": self.stale_timeout_seconds,
            "limits": self.limits.to_json(),
            "webrtc": self.webrtc.to_json(),
        }

    def copy(self) -> ProcessConfig:
        """A deep copy (placeholder resolution works on copies)."""
        return copy.deepcopy(self)
