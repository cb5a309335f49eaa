"""Fixtures of the bundle tests: run ``python -m monai.bundle`` as a user does, on a tiny configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
TINY = ["--spatial_size", "[64,64,48]", "--trunk", "small", "--cache", "none"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def bundle_run(*configs: str, args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    files = [str(CONFIGS / c) for c in configs]
    config_arg = files[0] if len(files) == 1 else "[" + ",".join(repr(f) for f in files) + "]"
    cmd = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", config_arg,
        "--meta_file", str(CONFIGS / "metadata.json"),
        "--logging_file", str(CONFIGS / "logging.conf"),
        *args,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"bundle run failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def bundle_tools() -> SimpleNamespace:
    """``run`` (a ``monai.bundle run`` subprocess), ``configs`` folder, ``tiny`` overrides and ``env``."""
    return SimpleNamespace(run=bundle_run, configs=CONFIGS, tiny=TINY, env=_env)


@pytest.fixture(scope="session")
def trained(tiny_synthetic: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle root with a 1-epoch tiny AxialNet trained on the tiny synthetic data (small trunk, 64 x 64 x 48)."""
    root = tmp_path_factory.mktemp("bundle")
    # a dataset_dir relative to the working directory, as a user types it (issue 14 item 8: organ paths were joined
    # twice and the scans failed)
    relative = os.path.relpath(tiny_synthetic, root)
    bundle_run(
        "train.json",
        args=["--bundle_root", str(root), "--dataset_dir", relative, "--train#trainer#max_epochs", "1", *TINY],
        cwd=root,
    )
    return root


