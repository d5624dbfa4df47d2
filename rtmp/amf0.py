"""AMF0 encoding and decoding (the value format of RTMP commands and metadata).

Python mapping: number -> ``float`` (``int`` accepted when encoding), boolean -> ``bool``,
string / long string / XML document -> ``str``, object -> ``dict`` (keys ``str``),
ECMA array -> :class:`EcmaArray` (a ``dict``), strict array -> ``list``, null -> ``None``,
undefined / unsupported -> :data:`UNDEFINED`, date -> :class:`AmfDate`, typed object -> ``dict``
(the class name is dropped).

:func:`decode_all` raises :class:`~rtmp.errors.AmfError` for anything malformed: truncated
values, unknown markers, nesting deeper than ``max_depth``, invalid UTF-8. Pure functions.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

from .errors import AmfError

__all__ = ["UNDEFINED", "AmfDate", "EcmaArray", "decode", "decode_all", "encode", "encode_all"]

MAX_DEPTH = 32

_NUMBER, _BOOLEAN, _STRING, _OBJECT, _NULL, _UNDEFINED = 0x00, 0x01, 0x02, 0x03, 0x05, 0x06
_REFERENCE, _ECMA_ARRAY, _OBJECT_END, _STRICT_ARRAY, _DATE = 0x07, 0x08, 0x09, 0x0A, 0x0B
_LONG_STRING, _UNSUPPORTED, _XML, _TYPED_OBJECT = 0x0C, 0x0D, 0x0F, 0x10

_DOUBLE = struct.Struct(">d")


class _Undefined:
    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED = _Undefined()


class EcmaArray(dict):  # type: ignore[type-arg]
    """An AMF0 ECMA array (associative array; ``onMetaData`` uses one)."""


@dataclass(frozen=True)
class AmfDate:
    """An AMF0 date: milliseconds since the epoch and a (deprecated) timezone offset."""

    milliseconds: float
    timezone: int = 0


# --- decoding ----------------------------------------------------------------------------------


class _Reader:
    __slots__ = ("data", "pos", "max_depth")

    def __init__(self, data: bytes, max_depth: int) -> None:
        self.data = data
        self.pos = 0
        self.max_depth = max_depth

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise AmfError("amf-short", f"need {n} bytes at offset {self.pos}")
        out = self.data[self.pos:end]
        self.pos = end
        return out

    def u8(self) -> int:
        if self.pos >= len(self.data):
            raise AmfError("amf-short", f"need 1 byte at offset {self.pos}")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def utf8(self, n: int) -> str:
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise AmfError("amf-utf8", f"invalid UTF-8 in a string at offset {self.pos}") from None

    def properties(self, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while True:
            key = self.utf8(self.u16())
            if not key and self.pos < len(self.data) and self.data[self.pos] == _OBJECT_END:
                self.pos += 1
                return out
            out[key] = self.value(depth + 1)

    def value(self, depth: int = 0) -> Any:
        if depth > self.max_depth:
            raise AmfError("amf-depth", f"nested deeper than {self.max_depth}")
        marker = self.u8()
        if marker == _NUMBER:
            return _DOUBLE.unpack(self.take(8))[0]
        if marker == _BOOLEAN:
            return self.u8() != 0
        if marker == _STRING:
            return self.utf8(self.u16())
        if marker == _OBJECT:
            return self.properties(depth)
        if marker == _NULL:
            return None
        if marker in (_UNDEFINED, _UNSUPPORTED):
            return UNDEFINED
        if marker == _ECMA_ARRAY:
            self.take(4)  # the count is advisory; the end marker terminates
            return EcmaArray(self.properties(depth))
        if marker == _STRICT_ARRAY:
            count = self.u32()
            if count > len(self.data) - self.pos:  # every value takes at least one byte
                raise AmfError("amf-count", f"strict array of {count} values in a short message")
            return [self.value(depth + 1) for _ in range(count)]
        if marker == _DATE:
            ms = _DOUBLE.unpack(self.take(8))[0]
            tz = int.from_bytes(self.take(2), "big", signed=True)
            return AmfDate(ms, tz)
        if marker in (_LONG_STRING, _XML):
            return self.utf8(self.u32())
        if marker == _TYPED_OBJECT:
            self.utf8(self.u16())
            return self.properties(depth)
        if marker == _OBJECT_END:
            raise AmfError("amf-object-end", f"unexpected object end at offset {self.pos - 1}")
        if marker == _REFERENCE:
            raise AmfError("amf-reference", "object references are not supported")
        raise AmfError("amf-marker", f"unknown type marker 0x{marker:02x} at offset {self.pos - 1}")


def decode(data: bytes, max_depth: int = MAX_DEPTH) -> tuple[Any, int]:
    """Decode one value from the start of ``data``; returns ``(value, bytes consumed)``."""
    reader = _Reader(bytes(data), max_depth)
    return reader.value(), reader.pos


def decode_all(data: bytes, max_depth: int = MAX_DEPTH) -> list[Any]:
    """Decode every value in ``data`` (a command or data message body)."""
    reader = _Reader(bytes(data), max_depth)
    values = []
    while reader.pos < len(reader.data):
        values.append(reader.value())
    return values


# --- encoding ----------------------------------------------------------------------------------


def _encode_key(key: str) -> bytes:
    raw = key.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError("AMF0 property name longer than 65535 bytes")
    return len(raw).to_bytes(2, "big") + raw


def _encode_props(obj: dict[str, Any], out: list[bytes], depth: int) -> None:
    for key, value in obj.items():
        out.append(_encode_key(str(key)))
        _encode(value, out, depth + 1)
    out.append(b"\x00\x00\x09")


def _encode(value: Any, out: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"value nested deeper than {MAX_DEPTH}")
    if value is None:
        out.append(b"\x05")
    elif value is UNDEFINED:
        out.append(b"\x06")
    elif isinstance(value, bool):
        out.append(b"\x01\x01" if value else b"\x01\x00")
    elif isinstance(value, int | float):
        number = float(value)
        if math.isnan(number):
            number = math.nan
        out.append(b"\x00" + _DOUBLE.pack(number))
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) <= 0xFFFF:
            out.append(b"\x02" + len(raw).to_bytes(2, "big") + raw)
        else:
            out.append(b"\x0c" + len(raw).to_bytes(4, "big") + raw)
    elif isinstance(value, AmfDate):
        out.append(b"\x0b" + _DOUBLE.pack(value.milliseconds) + value.timezone.to_bytes(2, "big", signed=True))
    elif isinstance(value, EcmaArray):
        out.append(b"\x08" + len(value).to_bytes(4, "big"))
        _encode_props(value, out, depth)
    elif isinstance(value, dict):
        out.append(b"\x03")
        _encode_props(value, out, depth)
    elif isinstance(value, list | tuple):
        out.append(b"\x0a" + len(value).to_bytes(4, "big"))
        for item in value:
            _encode(item, out, depth + 1)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF0")


def encode(value: Any) -> bytes:
    """Encode one value (TypeError for unsupported Python types)."""
    out: list[bytes] = []
    _encode(value, out, 0)
    return b"".join(out)


def encode_all(*values: Any) -> bytes:
    """Encode several values back to back (a command: name, transaction id, object, …)."""
    out: list[bytes] = []
    for value in values:
        _encode(value, out, 0)
    return b"".join(out)
