"""ContiguousReader: same array and affine as the wrapped reader, C-contiguous."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch
from monai.data import NibabelReader
from monai.transforms import LoadImage

from hirescam_ext.transforms.loading import ContiguousReader, default_ct_readers, to_c_order


def test_to_c_order_keeps_values():
    a = np.asfortranarray(np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7))
    b = to_c_order(a)
    assert b.flags.c_contiguous and np.array_equal(a, b)
    c = np.arange(8).reshape(2, 4)
    assert to_c_order(c) is c


def test_wrapped_nifti_reader_matches_monai(tmp_path):
    vol = np.random.RandomState(0).randint(-1000, 1000, size=(9, 8, 7)).astype(np.int16)
    affine = np.diag([-0.7, -0.7, 1.2, 1.0])
    nib.save(nib.Nifti1Image(vol, affine), tmp_path / "a.nii")
    plain = LoadImage(reader=NibabelReader(), image_only=True, dtype=None)(str(tmp_path / "a.nii"))
    fast = LoadImage(reader=ContiguousReader(NibabelReader()), image_only=True, dtype=None)(str(tmp_path / "a.nii"))
    assert torch.equal(fast.as_tensor(), plain.as_tensor()) and torch.allclose(fast.affine, plain.affine)
    assert fast.dtype == torch.int16


def test_default_readers_pick_npz_nifti_then_itk():
    npz, nifti, itk = reversed(default_ct_readers())  # LoadImage tries the last registered first
    assert npz.verify_suffix("a.npz") and not npz.verify_suffix("a.nii.gz")
    assert nifti.verify_suffix("a.nii.gz") and not nifti.verify_suffix("a.nrrd")
    assert itk.verify_suffix("a.nrrd")
