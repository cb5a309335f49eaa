"""Axial slices of a volume in its own file's voxel order, shown in the radiological convention."""

from __future__ import annotations

import numpy as np

from hirescam_ext.inference.figures import axial_axis, axial_slice, highest_mass_slice


def test_axial_slice_of_an_lps_volume_matches_the_ras_volume() -> None:
    ras = np.random.default_rng(0).random((5, 4, 3))
    lps = ras[::-1, ::-1, :]
    ras_affine, lps_affine = np.diag([1.0, 1.0, 2.0, 1.0]), np.diag([-1.0, -1.0, 2.0, 1.0])
    np.testing.assert_array_equal(axial_slice(lps, lps_affine, 1), axial_slice(ras, ras_affine, 1))


def test_axial_axis_follows_the_affine_not_the_array_order() -> None:
    sagittal_last = np.array([[0, 0, 1.0, 0], [0, 1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1]])  # axis 0 runs I -> S
    volume = np.zeros((6, 4, 5))
    volume[4] = 1.0
    assert axial_axis(sagittal_last) == 0 and highest_mass_slice(volume, sagittal_last) == 4
    assert axial_slice(volume, sagittal_last, 4).shape == (5, 4)  # [X, Y] = file axes 2, 1
