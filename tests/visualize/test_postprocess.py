"""Specification of the CAM post-processing: whole-volume normalization and upsampling."""

from __future__ import annotations

import torch

from hirescam_ext.visualize import normalize_cam, upsample_axial_maps
from hirescam_ext.visualize.postprocess import upsample_maps


def test_normalize_uses_whole_volume_not_each_slice():
    maps = torch.zeros(1, 1, 4, 3, 3)  # [B, M, H, D1, D2]
    maps[0, 0, 1, 1, 1] = 10.0  # global maximum in slice 1
    maps[0, 0, 2, 0, 0] = 2.0  # slice 2 has a smaller local maximum
    out = normalize_cam(maps)
    assert out[0, 0, 1, 1, 1] == 1.0
    assert torch.isclose(out[0, 0, 2, 0, 0], torch.tensor(0.2))
    assert out[0, 0, [0, 2, 3]].max() < 1.0


def test_normalize_applies_relu_then_min_max_per_sample_and_class():
    maps = torch.tensor([[[-5.0, 1.0, 3.0], [2.0, 4.0, 6.0]]]).reshape(1, 2, 3)
    out = normalize_cam(maps)
    assert torch.allclose(out[0, 0], torch.tensor([0.0, 1 / 3, 1.0]))
    assert torch.allclose(out[0, 1], torch.tensor([0.0, 0.5, 1.0]))


def test_normalize_all_zero_map_stays_zero_and_finite():
    maps = torch.zeros(2, 3, 4, 5, 5)
    maps[1, 2] = -1.0  # all negative becomes all zero after ReLU
    out = normalize_cam(maps)
    assert torch.isfinite(out).all()
    assert (out == 0).all()


def test_upsample_axial_maps_moves_slice_axis_last():
    maps = torch.zeros(1, 2, 4, 3, 3)  # H=4 triplets
    maps[0, 1, 3] = 1.0  # last triplet, class 1
    up = upsample_axial_maps(maps, (12, 12, 12))
    assert up.shape == (1, 2, 12, 12, 12)
    assert (up[0, 0] == 0).all()
    assert up[0, 1, :, :, -1].min() == 1.0  # superior end of Z holds the last triplet
    assert up[0, 1, :, :, 0].max() == 0.0


def test_upsample_maps_matches_input_spatial_size():
    assert upsample_maps(torch.rand(2, 3, 2, 2, 2), (8, 6, 4)).shape == (2, 3, 8, 6, 4)
    assert upsample_maps(torch.rand(2, 3, 5, 5), (20, 10)).shape == (2, 3, 20, 10)
