"""Shared fixtures: the shared real-data folder and a small synthetic dataset generated once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Property-based tests draw the same examples on every run (reproducible CI); HYPOTHESIS_PROFILE=explore draws new ones.
settings.register_profile("reproducible", derandomize=True, database=None)
settings.register_profile("explore", database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reproducible"))

REPO_ROOT = Path(__file__).resolve().parents[1]
#: the shared real-data folder: ``$HIRESCAM_SHARED_DATASETS`` when set, else ``../shared/datasets`` next to the checkout
SHARED_DATASETS = Path(os.environ.get("HIRESCAM_SHARED_DATASETS") or REPO_ROOT.parent / "shared" / "datasets").resolve()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def load_script():
    """``load_script("eval_learnability")``: ``scripts/<name>.py`` imported as a module (the scripts are files, not a
    package), for tests of their functions and ``main``."""
    import importlib.util

    def load(name: str):
        path = REPO_ROOT / "scripts" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"_script_under_test_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def shared_datasets_dir() -> Path:
    """Where the shared real-data folder is expected (``SHARED_DATASETS``), present or not: for tests that skip
    themselves when the one dataset they need is missing."""
    return SHARED_DATASETS


@pytest.fixture(scope="session")
def shared_datasets(shared_datasets_dir: Path) -> Path:
    """The shared real-data folder; tests using it skip with a reason when it is absent."""
    if not shared_datasets_dir.is_dir():
        pytest.skip(f"shared real-data folder not found at {shared_datasets_dir} (set HIRESCAM_SHARED_DATASETS)")
    return shared_datasets_dir


@pytest.fixture(scope="session")
def cip(shared_datasets_dir: Path) -> Path:
    """The shared CIP COPDGene chest CT folder (DICOM, NRRD, NIfTI and its lung label map); skips when absent."""
    folder = shared_datasets_dir / "cip-copdgene-chestct"
    if not folder.is_dir():
        pytest.skip(f"shared dataset folder {folder} is absent")
    return folder


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-scan synthetic chest-CT dataset of 64 x 64 x 48 voxels (profile ``tiny``)."""
    from hirescam_ext.synthetic.generator import generate_dataset

    out = tmp_path_factory.mktemp("synthetic_tiny")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    generate_dataset(out, profile="tiny", n_scans=12, seed=3, progress=False)
    return out
