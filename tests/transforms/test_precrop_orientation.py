"""The pre-crop works in RAS axis order whatever the order the file stores its voxel axes in."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from hirescam_ext.transforms import ct_preprocessing


@pytest.mark.parametrize("precrop", [True, False])
def test_a_volume_stored_z_x_y_keeps_all_its_anatomy(tmp_path: Path, precrop: bool) -> None:
    arr = np.full((40, 60, 50), 500, dtype=np.int16)  # voxel axes: world z, x, y
    affine = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    path = tmp_path / "zxy.nii.gz"
    nib.save(nib.Nifti1Image(arr, affine), path)
    pre = ct_preprocessing(  # a constant toy volume: the CT value checks would (rightly) reject it
        spacing=(1, 1, 1),
        spatial_size=(48, 38, 30),
        label_map_keys=[],
        precrop=precrop,
        center=None,
        check_inputs=False,
    )
    image = pre({"image": str(path)})["image"][0]
    assert tuple(image.shape) == (48, 38, 30)
    assert int((image < 0.5).sum()) == 0  # the whole crop is inside the scan: no padding
