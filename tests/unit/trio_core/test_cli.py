"""trio_core.cli in-process: ``--help-config``, ``--version`` and configuration errors (exit 2)
— the served run is tested as a subprocess in tests/integration/api/test_cli.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from trio_core.cli import EXIT_CONFIG, EXIT_OK, build_parser, main


def test_help_config_lists_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help-config"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "api.address" in out and "CORE_API_ADDRESS" in out


def test_version_and_config_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("trio-core ")
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    assert main(["--config", str(bad)]) == EXIT_CONFIG
    assert capsys.readouterr().err.startswith("trio-core: ")
    monkeypatch.setenv("CORE_API_ADDRESS", "127.0.0.1:99999")
    assert main([]) == EXIT_CONFIG
    assert "CORE_API_ADDRESS" in capsys.readouterr().err
