"""The ``hirescam`` entry point and the package's public names."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import hirescam_ext
from hirescam_ext.cli import SUBCOMMANDS, main

REPO = Path(__file__).resolve().parents[1]


def test_version_flag_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"hirescam {hirescam_ext.__version__}"


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert f"  {name}" in out


def test_unknown_command_exits_2_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_has_help(name: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hirescam_ext", name, "--help"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage" in proc.stdout.lower()


def test_every_public_name_resolves() -> None:
    missing = [name for name in hirescam_ext.__all__ if getattr(hirescam_ext, name, None) is None]
    assert not missing


def test_readme_commands_exist() -> None:
    readme = (REPO / "README.md").read_text()
    assert readme.split("```bash\n", 1)[1].startswith("make demo")
    documented = set(re.findall(r"`hirescam (\w+)", readme))
    assert documented <= set(SUBCOMMANDS), documented - set(SUBCOMMANDS)
    for config in re.findall(r"configs/([\w]+\.json)", readme):
        assert (REPO / "configs" / config).is_file(), config
