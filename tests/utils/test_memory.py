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
    train = json.loads((configs / "train.json").read_text(encoding="utf-8"))
    # in run, not initialize: a packaged bundle finds hirescam_ext only once MONAI's run has put its root on sys.path
    assert train["run"][0] == "$hirescam_ext.retain_freed_memory()" and train["initialize"] == []
    multi = json.loads((configs / "multi_gpu_train.json").read_text(encoding="utf-8"))  # its initialize replaces
    assert "$hirescam_ext.retain_freed_memory()" in multi["initialize"]
