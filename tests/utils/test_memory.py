"""retain_freed_memory: glibc's mmap and trim thresholds raised for the process, or nothing where that is not glibc."""

from __future__ import annotations

import platform
import sys

import pytest

from hirescam_ext.utils import memory


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="needs glibc")
def test_thresholds_are_set_on_glibc() -> None:
    assert memory.retain_freed_memory() is True


def test_nothing_is_set_outside_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory.retain_freed_memory() is False


def test_a_c_library_without_mallopt_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoMallopt:  # e.g. musl's libc: no mallopt symbol
        def __getattr__(self, name: str) -> None:
            raise AttributeError(name)

    monkeypatch.setattr(memory.sys, "platform", "linux")
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: NoMallopt())
    assert memory.retain_freed_memory() is False


def test_the_training_configs_keep_freed_memory() -> None:
    import json
    from pathlib import Path

    configs = Path(__file__).resolve().parents[2] / "configs"
    for name in ("train.json", "multi_gpu_train.json"):
        initialize = json.loads((configs / name).read_text(encoding="utf-8"))["initialize"]
        assert "$hirescam_ext.utils.memory.retain_freed_memory()" in initialize, name
