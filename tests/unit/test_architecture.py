"""The architecture rules of the project, checked on its source with ``ast`` (no import).

* No import cycle among the project's modules (``relay``, ``rtp``, ``rtmp``, ``trio_core``): every
  ``import``/``from … import`` counts as an edge — module level, function level and type-only
  ones under ``if TYPE_CHECKING:`` alike. Where two modules need each other, a small
  ``Protocol`` they share breaks the circle.
* Parts find each other through the composition root (``trio_core.server``), never through
  string keys in ``app.extensions``.
* Every child process is started by the FFmpeg toolkit (``trio_core/ffmpeg/``): no
  ``trio.run_process``, ``subprocess.*`` or ``open_process`` anywhere else.
* ``rtp/``, ``rtmp/`` (and ``relay/``) import nothing from ``trio_core``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: the project's top-level packages (``relay`` once the relay branch is merged)
PACKAGES = tuple(p for p in ("relay", "rtp", "rtmp", "trio_core") if (ROOT / p).is_dir())
BELOW_TRIO_CORE = ("relay", "rtp", "rtmp")
FFMPEG_TOOLKIT = "trio_core/ffmpeg/"


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package ``__init__``)."""
    found: dict[str, tuple[Path, bool]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            found[".".join(parts)] = (path, is_package)
    return found


MODULES = _modules()


def _imported(module: str, path: Path, is_package: bool) -> Iterator[tuple[str, int]]:
    """The project modules ``module`` imports (anywhere in the file), with line numbers."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # ``from pkg import sub`` imports the submodule ``pkg.sub``
            names = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source
                     for alias in node.names]
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                yield name, node.lineno


GRAPH: dict[str, set[str]] = {
    module: {target for target, _ in _imported(module, path, is_package)}
    for module, (path, is_package) in MODULES.items()
}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_graph_is_read() -> None:
    """The checker sees the project (guards the other tests against an empty graph)."""
    assert len(MODULES) > 50
    assert "trio_core.engine.supervisor" in GRAPH["trio_core.server"]
    assert "rtp.sdp" in GRAPH["rtp.peer"] or "rtp.sdp" in GRAPH["rtp.source"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_type_only_ones_included() -> None:
    cycles = _cycles(GRAPH)
    details = [
        " <-> ".join(component) + ": " + "; ".join(
            f"{m} -> {t}" for m in component for t in sorted(GRAPH[m]) if t in component)
        for component in cycles
    ]
    assert not cycles, "import cycles:\n" + "\n".join(details)


def test_no_app_extensions_keys() -> None:
    offenders = []
    for module, (path, _) in MODULES.items():
        if not module.startswith("trio_core"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "extensions" and (
                    isinstance(node.value, ast.Name | ast.Attribute)):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, "app.extensions used (wire it in trio_core/server.py): " + ", ".join(offenders)


def _spawns(path: Path) -> list[int]:
    """Lines of ``path`` that start a child process without the FFmpeg toolkit."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute):
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            if owner == "subprocess" or (owner == "trio" and node.attr == "run_process") or \
                    node.attr == "open_process":
                lines.append(node.lineno)
        elif isinstance(node, ast.Name) and node.id == "open_process":
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and (
                node.module == "subprocess" or (node.module == "trio" and any(
                    a.name in ("run_process", "open_process") for a in node.names))):
            lines.append(node.lineno)
    return lines


def test_spawn_finder_sees_every_spelling(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import subprocess, trio\nfrom subprocess import run\n"
                      "subprocess.run(['x'])\ntrio.run_process(['x'])\n"
                      "trio.lowlevel.open_process(['x'])\n# subprocess.run in a comment\n")
    assert _spawns(sample) == [2, 3, 4, 5]


def test_child_processes_only_in_the_ffmpeg_toolkit() -> None:
    offenders = {
        str(path.relative_to(ROOT)): lines
        for path, _ in MODULES.values() if (lines := _spawns(path))
    }
    # the set of files starting processes must be inside trio_core/ffmpeg/
    outside = {name: lines for name, lines in offenders.items()
               if not name.startswith(FFMPEG_TOOLKIT)}
    assert not outside, f"child processes started outside {FFMPEG_TOOLKIT}: {outside}"


def test_rtp_and_rtmp_import_nothing_from_trio_core() -> None:
    offenders = []
    for module, (path, is_package) in MODULES.items():
        if module.split(".")[0] not in BELOW_TRIO_CORE:
            continue
        offenders += [f"{module}:{line} -> {target}"
                      for target, line in _imported(module, path, is_package)
                      if target.split(".")[0] == "trio_core"]
    assert not offenders, offenders
