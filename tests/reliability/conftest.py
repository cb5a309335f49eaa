"""Fixtures of the fault-injection suite: a tiny bundle training run and helpers to corrupt copies of inputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
TINY = ["--spatial_size", "[64,64,48]", "--trunk", "small", "--cache", "none"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def train_command(root: Path, dataset: Path, epochs: int, *extra: str) -> list[str]:
    """``python -m monai.bundle run`` of ``configs/train.json`` on the tiny configuration, deterministic mode."""
    return [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", str(CONFIGS / "train.json"),
        "--meta_file", str(CONFIGS / "metadata.json"),
        "--logging_file", str(CONFIGS / "logging.conf"),
        "--bundle_root", str(root), "--dataset_dir", str(dataset),
        "--train#trainer#max_epochs", str(epochs), "--deterministic", "true", *TINY, *extra,
    ]  # fmt: skip


def run_training(root: Path, dataset: Path, epochs: int, *extra: str) -> subprocess.CompletedProcess:
    root.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        train_command(root, dataset, epochs, *extra), cwd=root, env=_env(), capture_output=True, text=True, timeout=600
    )


def kill_when(root: Path, dataset: Path, epochs: int, watched: Path, *extra: str) -> float:
    """Start a training run and SIGKILL it as soon as ``watched`` appears; return the seconds it ran.

    Raises ``AssertionError`` when the run ends by itself before ``watched`` appears.
    """
    root.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        train_command(root, dataset, epochs, *extra),
        cwd=root, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    start = time.monotonic()
    try:
        while not watched.exists():
            assert proc.poll() is None, f"training ended (rc {proc.returncode}) before {watched} appeared"
            assert time.monotonic() - start < 300, f"{watched} did not appear within 300 s"
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    return time.monotonic() - start


@pytest.fixture(scope="package")
def uninterrupted(tiny_synthetic: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bundle root of a 3-epoch tiny training run that nobody interrupted (deterministic, CPU)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    proc = run_training(root, tiny_synthetic, 3)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root
