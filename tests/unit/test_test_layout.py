"""The test suite's own layout rules, checked on the source text (``ast``, nothing imported).

- No test module imports another test module (shared code lives in ``tests/helpers/``).
- Every module of ``rtp/``, ``rtmp/`` and ``trio_core/`` is imported by at least one test
  module (``tests/**/test_*.py``), so each has a test a newcomer can find (a package counts
  as imported when one of its modules is).
- Every directory under ``tests/`` is a package (has ``__init__.py``).

The checks walk the packages and the test tree as they are on disk, so they keep holding when
modules or tests move.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
PACKAGES = ("rtp", "rtmp", "trio_core")


def dotted(path: Path) -> str:
    """``rtp/sdp.py`` → ``rtp.sdp``; ``trio_core/api/__init__.py`` → ``trio_core.api``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_test_modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("test_*.py") if "__pycache__" not in p.parts)


def source_modules() -> list[str]:
    """Every module of the project's packages (``__init__`` of a package counts as the package)."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "__pycache__" in path.parts or path.name == "__main__.py":
                continue
            found.append(dotted(path))
    return found


def imported_names(path: Path) -> Iterator[str]:
    """Every module a file imports, as absolute dotted names (``from a import b`` yields ``a``
    and ``a.b``, since ``b`` may be a submodule); relative imports are resolved."""
    package = dotted(path).rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module
            for alias in node.names:
                yield f"{module}.{alias.name}"


def is_test_module(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "tests" and any(p.startswith("test_") or p == "conftest" for p in parts[1:])


def test_helpers_work() -> None:
    """The checks below see what they are meant to see (so they cannot pass vacuously)."""
    assert dotted(ROOT / "rtp" / "sdp.py") == "rtp.sdp"
    assert dotted(ROOT / "trio_core" / "api" / "__init__.py") == "trio_core.api"
    here = Path(__file__)
    names = set(imported_names(here))
    assert {"ast", "pathlib.Path", "collections.abc.Iterator"} <= names
    assert is_test_module("tests.unit.rtp.test_sdp") and is_test_module("tests.conftest")
    assert not is_test_module("tests.helpers.api") and not is_test_module("trio_core.server")
    assert len(all_test_modules()) > 50
    modules = source_modules()
    assert "rtp.sdp" in modules and "rtmp.chunk" in modules and "trio_core.server" in modules


def test_no_test_module_imports_another_test_module() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(n for n in imported_names(path) if is_test_module(n))
        for path in sorted(TESTS.rglob("*.py"))
        if "__pycache__" not in path.parts
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_every_source_module_is_imported_by_a_test_module() -> None:
    imported: set[str] = set()
    for path in all_test_modules():
        for name in imported_names(path):
            parts = name.split(".")  # importing a.b.c runs a/__init__ and a/b/__init__ too
            imported.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    missing = [m for m in source_modules() if m not in imported]
    assert missing == [], f"modules no test module imports: {missing}"


def test_every_test_directory_is_a_package() -> None:
    dirs = [d for d in TESTS.rglob("*") if d.is_dir() and d.name != "__pycache__"]
    assert dirs
    assert [str(d.relative_to(ROOT)) for d in dirs if not (d / "__init__.py").exists()] == []
