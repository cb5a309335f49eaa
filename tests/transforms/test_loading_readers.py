"""default_ct_readers on a machine without ITK (a lean GPU training machine): NIfTI still loads."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from monai.transforms import LoadImage

import hirescam_ext.transforms.loading as loading


def test_without_itk_the_readers_leave_itk_out_and_nifti_still_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(loading, "optional_import", lambda name: (None, False))
    readers = loading.default_ct_readers()
    assert not any("ITK" in type(getattr(r, "base", r)).__name__ for r in readers)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.full((4, 5, 6), -1000, np.int16), np.eye(4)), path)
    image = LoadImage(reader=readers, image_only=True)(str(path))
    assert tuple(image.shape) == (4, 5, 6)


def test_with_itk_the_itk_reader_comes_first():
    readers = loading.default_ct_readers()
    assert "ITK" in type(getattr(readers[0], "base", readers[0])).__name__
