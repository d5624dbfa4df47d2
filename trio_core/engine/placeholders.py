"""Placeholder resolution (datarhei ``restream/replace``), pure functions, no I/O.

Syntax: ``{name[^c][,key=value,...]}`` where ``name`` is ``[a-z]+`` optionally followed by
``:<alnum>`` (``{fs:disk}``). ``^c`` escapes every ``c`` in the substituted value as ``\\\\c``
(two backslashes, for tee/filter strings), e.g. ``{memfs^:}``. Parameter values are
URL-unescaped and may use ``$processid``, ``$reference``, ``$inputid``/``$outputid``; a value
template may contain ``{key}`` slots filled from the parameters (e.g. an ``rtmp`` template
``rtmp://localhost:1935/{name}``). Placeholders with no value are left untouched.

Values given to :func:`resolve_config` (``values``): ``diskfs`` (alias ``fs:disk``), ``memfs``
(alias ``fs:mem``), ``fs:<name>``, ``rtmp``, ``srt``, ``whip`` — any of them may be absent. A value may
be a :class:`Template` (Core's ``RegisterTemplateFunc``): a different text per section
(``input``/``output``) and defaults for its ``{key}`` slots (``{srt}``: ``latency=20000``).
Per section (as datarhei ``resolvePlaceholders``):

* global ``options``: ``{diskfs}``, ``{fs:*}`` (not ``{memfs}``/``{fs:mem}``)
* IO ``id``: ``{processid}``, ``{reference}``
* IO ``address``: ids, ``{inputid}``/``{outputid}`` (own section), ``{diskfs}``, ``{memfs}``,
  ``{fs:*}``, ``{rtmp}``, ``{srt}``, ``{whip}``
* IO ``options``: ids, own-section io id, ``{diskfs}``, ``{memfs}``, ``{fs:*}``
* output ``cleanup[].pattern``: ``{processid}``, ``{reference}``, ``{outputid}``
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from trio_core.engine.process_config import ProcessConfig

__all__ = ["PLACEHOLDER_RE", "Placeholders", "Template", "normalise_values", "replace", "resolve_config"]

PLACEHOLDER_RE = re.compile(r"\{([a-z]+(?::[0-9A-Za-z]+)?)(?:\^(.))?(?:,(.*?))?\}")


class Template(str):
    """A placeholder value with per-section variants and slot defaults.

    ``str(t)`` is the ``input`` variant; :meth:`for_section` gives the one for ``"input"`` or
    ``"output"``. ``defaults`` fill ``{key}`` slots the placeholder's parameters leave out.
    """

    sections: dict[str, str]
    defaults: dict[str, str]

    def __new__(cls, input: str, output: str | None = None,
                defaults: Mapping[str, str] | None = None) -> Template:
        obj = super().__new__(cls, input)
        obj.sections = {"input": input, "output": input if output is None else output}
        obj.defaults = dict(defaults or {})
        return obj

    def for_section(self, section: str) -> Template:
        """The variant for ``section`` (same defaults)."""
        text = self.sections.get(section, str(self))
        return Template(text, text, self.defaults)


class Placeholders(Mapping[str, str]):
    """The live placeholder values (``diskfs``, ``memfs``, ``rtmp``, ``srt``, …) the engine
    resolves process configs with. A read-only mapping for its readers; each value is added
    by the scope that owns it with :meth:`provide` and is gone when that scope ends."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}

    @contextmanager
    def provide(self, name: str, value: str) -> Iterator[None]:
        """Provide ``{name}`` = ``value`` while the ``with`` block runs (registered on entry,
        removed on exit, also on error or cancellation). ValueError when another scope
        provides ``name`` already."""
        if name in self._values:
            raise ValueError(f"placeholder {{{name}}} is provided already")
        self._values[name] = value
        try:
            yield
        finally:
            self._values.pop(name, None)

    def __getitem__(self, name: str) -> str:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Placeholders({sorted(self._values)})"


def _params(raw: str | None, variables: Mapping[str, str]) -> dict[str, str]:
    params: dict[str, str] = {}
    if not raw:
        return params
    for part in raw.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            continue
        value = urllib.parse.unquote(value)
        for var, var_value in variables.items():
            value = value.replace(f"${var}", var_value)
        params[key.strip()] = value
    return params


def replace(text: str, values: Mapping[str, str], variables: Mapping[str, str] | None = None) -> str:
    """Substitute every placeholder of ``text`` whose name is in ``values``.

    ``variables`` are the ``$name`` variables usable inside parameter values.
    """
    variables = variables or {}

    def substitute(match: re.Match[str]) -> str:
        name, escape, raw_params = match.group(1), match.group(2), match.group(3)
        if name not in values:
            return match.group(0)
        value = values[name]
        params = _params(raw_params, variables)
        if isinstance(value, Template):
            params = {**value.defaults, **params}
            value = str(value)
        for key, param in params.items():
            value = value.replace("{" + key + "}", param)
        if escape:
            value = value.replace(escape, "\\\\" + escape)
        return value

    return PLACEHOLDER_RE.sub(substitute, text)


def normalise_values(values: Mapping[str, str]) -> dict[str, str]:
    """Fill the aliases: ``diskfs`` <-> ``fs:disk``, ``memfs`` <-> ``fs:mem``."""
    out = dict(values)
    for a, b in (("diskfs", "fs:disk"), ("memfs", "fs:mem")):
        if a in out and b not in out:
            out[b] = out[a]
        elif b in out and a not in out:
            out[a] = out[b]
    return out


def resolve_config(cfg: ProcessConfig, values: Mapping[str, str]) -> ProcessConfig:
    """A copy of ``cfg`` with placeholders resolved (``cfg`` itself is not modified)."""
    values = normalise_values(values)
    out = cfg.copy()
    ids = {"processid": cfg.id, "reference": cfg.reference}
    fs_values = {k: v for k, v in values.items() if k.startswith("fs:") and k != "fs:mem"}
    if "diskfs" in values:
        fs_values["diskfs"] = values["diskfs"]
    out.options = [replace(o, fs_values) for o in cfg.options]
    storage = {k: v for k, v in values.items() if k in ("diskfs", "memfs") or k.startswith("fs:")}
    streams_by_section = {
        section: {k: (v.for_section(section) if isinstance(v, Template) else v)
                  for k, v in values.items() if k in ("rtmp", "srt", "whip")}
        for section in ("input", "output")
    }
    for section, items in (("input", out.input), ("output", out.output)):
        id_key = "inputid" if section == "input" else "outputid"
        streams = streams_by_section[section]
        for io in items:
            io.id = replace(io.id, ids)
            own = {**ids, id_key: io.id}
            variables = own
            io.address = replace(io.address, {**own, **storage, **streams}, variables)
            io.options = [replace(o, {**own, **storage}, variables) for o in io.options]
            for rule in io.cleanup:
                rule["pattern"] = replace(str(rule.get("pattern", "")), own)
    return out
