"""Atomic writes leave files with the permissions a plain ``open()`` would give them."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from hirescam_ext.utils.io import atomic_write, write_text_atomic


@pytest.fixture()
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_file_follows_the_umask(tmp_path: Path, umask_022: None) -> None:
    write_text_atomic(tmp_path / "table.csv", "a,b\n")
    assert _mode(tmp_path / "table.csv") == 0o644


def test_replaced_file_keeps_its_mode(tmp_path: Path, umask_022: None) -> None:
    target = tmp_path / "result.json"
    target.write_text("{}")
    target.chmod(0o640)
    with atomic_write(target) as tmp:
        Path(tmp).write_text('{"a": 1}')
    assert _mode(target) == 0o640 and target.read_text() == '{"a": 1}'
