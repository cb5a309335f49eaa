"""Voxel spacing checks of CT loading: warned when unusual, refused when implausible, per scan."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from hirescam_ext.utils.ct_checks import load_ct
from hirescam_ext.utils.errors import InputError


def _scan(path: Path, spacing: tuple[float, float, float]) -> Path:
    volume = np.full((8, 8, 6), 40, np.int16)
    volume[:2] = -1000
    nib.save(nib.Nifti1Image(volume, np.diag([*spacing, 1.0])), str(path))
    return path


def test_spacing_above_50_mm_is_refused_naming_file_and_spacing(tmp_path: Path) -> None:
    path = _scan(tmp_path / "ct.nii.gz", (0.7, 0.7, 104.0))
    with pytest.raises(InputError, match=r"ct\.nii\.gz: implausible voxel spacing \(0\.7, 0\.7, 104\) mm"):
        load_ct(path)


def test_tiny_spacing_loads_with_a_warning_naming_file_and_spacing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _scan(tmp_path / "ct.nii.gz", (0.01, 0.7, 1.0))
    with caplog.at_level(logging.WARNING, logger="hirescam_ext.utils.ct_checks"):
        volume = load_ct(path)
    assert volume.shape == (8, 8, 6)
    assert any(str(path) in r.getMessage() and "(0.01, 0.7, 1) mm" in r.getMessage() for r in caplog.records)

