"""Process configuration model (datarhei Core ``ProcessConfig`` shape) and its JSON decoding.

Two steps, as Core's API handler does them:

1. :func:`decode_onto` applies a request body onto a base object like Go's ``json.Unmarshal``
   onto a pre-filled struct: only the fields of :data:`PROCESS_SCHEMA` are taken (matched
   exactly, else case-insensitively as Go does), **unknown fields are ignored** (newer clients
   send ``owner``, ``domain``, ``scheduler``, …); nested objects (``limits``, ``webrtc``) keep
   the fields not sent; a JSON array replaces the list but its objects are decoded *into* the
   elements at the same index (Go reuses them), so ``input[0]`` keeps e.g. its ``options`` if
   only ``address`` is sent; ``null`` leaves a scalar or object as it was and empties a list.
   A value of the wrong JSON type (a string for a number, a negative or fractional value for an
   unsigned integer, a number beyond ``2**64-1``) raises :class:`ConfigTypeError` naming the
   field (Core answers these with 400 "Invalid JSON").
2. :meth:`ProcessConfig.from_json` validates the result and raises :class:`ConfigError` naming
   the field (``output[1].address``, ``limits.cpu_usage``, ``id``, ...). It also ignores unknown
   keys, so ``db.json`` files written by other versions load. Missing fields get Core's
   defaults; an input/output without an ``id`` gets a generated one (22-character shortuuid,
   as Core's ``generateInputOutputIDs``).

Process ids are restricted to :data:`ID_CHARSET` (``[A-Za-z0-9_.:-]``, 1..:data:`MAX_ID_LENGTH`
characters; what Core's clients generate, e.g. ``restreamer-ui:ingest:<uuid>_snapshot``): they
appear in URL paths, file names and logs, so ``/``, spaces and control characters are refused
(``ConfigError("id", ...)``). ``from_json(obj, legacy_id=True)`` (used when loading
``db.json``) accepts any non-empty id so that stored processes with now-invalid ids still load
and can be deleted.

``to_json()`` returns Core's JSON shape (same field names; ``cleanup`` only when not empty, as
Core's ``omitempty``) plus our ``webrtc`` block. Placeholders are kept raw: resolution happens
on a copy at each start (see :mod:`trio_core.engine.placeholders`).

Pure data, no I/O.
"""

from __future__ import annotations

import copy
import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ID_CHARSET",
    "MAX_ID_LENGTH",
    "PROCESS_SCHEMA",
    "ConfigError",
    "ConfigTypeError",
    "IOConfig",
    "Limits",
    "ProcessConfig",
    "WebRTCOptions",
    "check_process_id",
    "decode_onto",
    "generate_id",
]

_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"  # shortuuid's 57 symbols

#: The characters allowed in a process id (a regex character class).
ID_CHARSET = "A-Za-z0-9_.:-"
MAX_ID_LENGTH = 255
_ID_RE = re.compile(f"[{ID_CHARSET}]{{1,{MAX_ID_LENGTH}}}")
UINT64_MAX = 2**64 - 1


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


class ConfigTypeError(ConfigError):
    """A JSON value of the wrong type or range for its field (Core: a JSON decoding error)."""


def check_process_id(value: str) -> str:
    """``value`` if it is a valid process id, else ConfigError naming the field ``id``."""
    if not value.strip():
        raise ConfigError("id", "an empty ID is not allowed")
    if not _ID_RE.fullmatch(value):
        if len(value) > MAX_ID_LENGTH:
            raise ConfigError("id", f"must be at most {MAX_ID_LENGTH} characters long")
        bad = next(c for c in value if not re.fullmatch(f"[{ID_CHARSET}]", c))
        raise ConfigError("id", f"invalid character {bad!r}; allowed are A-Z a-z 0-9 _ . : -")
    return value


# -- Go-like decoding onto a base ----------------------------------------------------------------

_CLEANUP_SCHEMA: dict[str, Any] = {
    "pattern": "string", "max_files": "uint", "max_file_age_seconds": "uint",
    "purge_on_delete": "bool",
}
_IO_SCHEMA: dict[str, Any] = {
    "id": "string", "address": "string", "options": ["string"], "cleanup": [_CLEANUP_SCHEMA],
}
#: The fields of a process config and their JSON types ("string", "bool", "uint" = Go uint64,
#: "float" = Go float64, ``[elem]`` = array, ``{...}`` = object). Everything else is ignored.
PROCESS_SCHEMA: dict[str, Any] = {
    "id": "string", "type": "string", "reference": "string",
    "input": [_IO_SCHEMA], "output": [_IO_SCHEMA], "options": ["string"],
    "reconnect": "bool", "reconnect_delay_seconds": "uint", "autostart": "bool",
    "stale_timeout_seconds": "uint",
    "limits": {"cpu_usage": "float", "memory_mbytes": "uint", "waitfor_seconds": "uint"},
    "webrtc": {"enabled": "bool", "video_pt": "uint", "audio_pt": "uint",
               "force_transcode": "bool", "token": "string", "video_codecs": ["string"]},
}
_GO_TYPES = {"string": "string", "bool": "bool", "uint": "uint64", "float": "float64"}


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return f"number {value!r}" if abs(value) < 1e30 else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _type_error(path: str, schema: Any, value: Any) -> ConfigTypeError:
    if isinstance(schema, list):
        want = "array"
    elif isinstance(schema, dict):
        want = "object"
    else:
        want = _GO_TYPES[schema]
    return ConfigTypeError(path, f"expect type '{want}', got {_json_kind(value)}")


def _scalar(schema: str, value: Any, path: str) -> Any:
    if schema == "string":
        if isinstance(value, str):
            return value
    elif schema == "bool":
        if isinstance(value, bool):
            return value
    elif schema == "uint":
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= UINT64_MAX:
            return value
    elif schema == "float":
        if (isinstance(value, int | float) and not isinstance(value, bool)
                and math.isfinite(float(value)) and abs(float(value)) <= 1.7976931348623157e308):
            return value
    raise _type_error(path, schema, value)


def _zero(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {}
    if isinstance(schema, list):
        return None
    return {"string": "", "bool": False, "uint": 0, "float": 0.0}[schema]


def _field_key(schema: dict[str, Any], key: str) -> str | None:
    if key in schema:
        return key
    folded = key.casefold()
    for name in schema:
        if name.casefold() == folded:
            return name
    return None


def decode_onto(base: Any, value: Any, schema: Any = None, path: str = "") -> Any:
    """``value`` (decoded JSON) applied onto ``base`` like Go's json.Unmarshal; a new object.

    ``schema`` defaults to :data:`PROCESS_SCHEMA`. ``base`` is not modified. Raises
    ConfigTypeError naming the field when a value has the wrong JSON type.
    """
    if schema is None:
        schema = PROCESS_SCHEMA
    if value is None:
        return None if isinstance(schema, list) else copy.deepcopy(base)
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise _type_error(path, schema, value)
        out = copy.deepcopy(base) if isinstance(base, dict) else {}
        for key, item in value.items():
            name = _field_key(schema, str(key))
            if name is None:
                continue  # unknown fields are ignored, as Core does
            sub = schema[name]
            where = f"{path}.{name}" if path else name
            if item is None and not isinstance(sub, list):
                continue  # null leaves the field as it was
            out[name] = decode_onto(out.get(name), item, sub, where)
        return out
    if isinstance(schema, list):
        if not isinstance(value, list):
            raise _type_error(path, schema, value)
        elem = schema[0]
        old = base if isinstance(base, list) else []
        result = []
        for i, item in enumerate(value):
            existing = old[i] if i < len(old) else None
            if item is None:
                result.append(copy.deepcopy(existing) if existing is not None else _zero(elem))
            else:
                result.append(decode_onto(existing, item, elem, f"{path}[{i}]"))
        return result
    return _scalar(schema, value, path)


# -- typed readers (validation of a decoded object) ----------------------------------------------


def _path(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _str(obj: dict[str, Any], key: str, prefix: str, default: str = "") -> str:
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ConfigTypeError(_path(prefix, key), "must be a string")
    return value


def _bool(obj: dict[str, Any], key: str, prefix: str, default: bool) -> bool:
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigTypeError(_path(prefix, key), "must be a boolean")
    return value


def _int(obj: dict[str, Any], key: str, prefix: str, default: int = 0, *, minimum: int = 0,
         maximum: int | None = UINT64_MAX) -> int:
    value = obj.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigTypeError(_path(prefix, key), "must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ConfigTypeError(_path(prefix, key), "must be an integer")
        value = int(value)
    if value < 0 or value > UINT64_MAX:
        raise ConfigTypeError(_path(prefix, key), "must be an integer in 0..2^64-1")
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
        raise ConfigTypeError(_path(prefix, key), "must be a number")
    try:
        value = float(value)
    except OverflowError:
        raise ConfigTypeError(_path(prefix, key), "must be a finite number") from None
    if not math.isfinite(value):
        raise ConfigTypeError(_path(prefix, key), "must be a finite number")
    if value < 0:
        raise ConfigError(_path(prefix, key), "must be >= 0")
    return value


def _str_list(obj: dict[str, Any], key: str, prefix: str) -> list[str]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigTypeError(_path(prefix, key), "must be a list of strings")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ConfigTypeError(f"{_path(prefix, key)}[{i}]", "must be a string")
    return list(value)


def _object(obj: dict[str, Any], key: str, prefix: str) -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigTypeError(_path(prefix, key), "must be an object")
    return value


# -- model ---------------------------------------------------------------------------------------


def _cleanup(value: Any, prefix: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigTypeError(prefix, "must be a list of objects")
    rules: list[dict[str, Any]] = []
    for i, rule in enumerate(value):
        where = f"{prefix}[{i}]"
        if not isinstance(rule, dict):
            raise ConfigTypeError(where, "must be an object")
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

    ``cleanup`` (datarhei's output cleanup rules) is accepted and kept for outputs only, and
    emitted by ``to_json`` only when not empty (Core's ``omitempty``).
    """

    id: str
    address: str
    options: list[str] = field(default_factory=list)
    cleanup: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self, *, output: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "address": self.address, "options": list(self.options)}
        if output and self.cleanup:
            out["cleanup"] = copy.deepcopy(self.cleanup)
        return out


@dataclass
class Limits:
    """Resource limits; 0 disables a limit. cpu_usage is percent of the whole machine."""

    cpu_usage: float = 0.0
    memory_mbytes: int = 0
    waitfor_seconds: int = 0

    def to_json(self) -> dict[str, Any]:
        cpu = int(self.cpu_usage) if float(self.cpu_usage).is_integer() else self.cpu_usage
        return {"cpu_usage": cpu, "memory_mbytes": self.memory_mbytes,  # Go writes 50, not 50.0
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
    def from_json(cls, obj: Any, *, legacy_id: bool = False) -> ProcessConfig:
        """Validate ``obj`` (a decoded JSON object); raises ConfigError naming the field.

        Unknown keys are ignored. A missing ``id`` gets a generated one; an empty one is an
        error, and so is one outside :data:`ID_CHARSET` unless ``legacy_id`` (db.json loading).
        """
        if not isinstance(obj, dict):
            raise ConfigTypeError("", "the process config must be a JSON object")
        if obj.get("id") is None:
            process_id = generate_id()
        else:
            process_id = _str(obj, "id", "")
            if legacy_id:
                if not process_id.strip():
                    raise ConfigError("id", "an empty ID is not allowed")
            else:
                check_process_id(process_id)
        ptype = _str(obj, "type", "").strip() or "ffmpeg"
        if ptype != "ffmpeg":
            raise ConfigTypeError("type", f"unsupported process type {ptype!r} (only 'ffmpeg')")
        inputs = cls._io_list(obj, "input", process_id)
        outputs = cls._io_list(obj, "output", process_id)
        limits_obj = _object(obj, "limits", "")
        limits = Limits(
            cpu_usage=_float(limits_obj, "cpu_usage", "limits"),
            memory_mbytes=_int(limits_obj, "memory_mbytes", "limits"),
            waitfor_seconds=_int(limits_obj, "waitfor_seconds", "limits"),
        )
        webrtc_obj = _object(obj, "webrtc", "")
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
    def _io_list(obj: dict[str, Any], key: str, process_id: str) -> list[IOConfig]:
        value = obj.get(key)
        if value is None or (isinstance(value, list) and not value):
            raise ConfigError(key, f"at least one {key} must be defined for the process")
        if not isinstance(value, list):
            raise ConfigTypeError(key, "must be a list of objects")
        items: list[IOConfig] = []
        for i, item in enumerate(value):
            where = f"{key}[{i}]"
            if not isinstance(item, dict):
                raise ConfigTypeError(where, "must be an object")
            io_id = _str(item, "id", where).strip()
            address = _str(item, "address", where).strip()
            if not address:
                raise ConfigError(f"{where}.address",
                                  f"the address for {key} '#{process_id}:{io_id}' must not be empty")
            cleanup = _cleanup(item.get("cleanup"), f"{where}.cleanup")
            items.append(IOConfig(
                id=io_id,
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
        for item in items:
            if not item.id:  # Core's generateInputOutputIDs: a fresh shortuuid
                new_id = generate_id()
                while new_id in seen:
                    new_id = generate_id()
                item.id = new_id
                seen.add(new_id)
        return items

    def to_json(self) -> dict[str, Any]:
        """Core's ProcessConfig JSON (plus ``webrtc``); a fresh object each call."""
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
