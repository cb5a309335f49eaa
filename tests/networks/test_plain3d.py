"""Specification of Plain3DCNN, the global-pooling 3D CNN sanity baseline."""

from __future__ import annotations

import pytest
import torch

from hirescam_ext import HiResCAM
from hirescam_ext.networks import Plain3DCNN


def test_logits_shape_for_any_volume_size_without_a_fixed_size():
    net = Plain3DCNN(n_classes=5, channels=(4, 8))
    assert net(torch.rand(2, 1, 32, 40, 24)).shape == (2, 5)
    assert net(torch.rand(1, 1, 16, 16, 16)).shape == (1, 5)


def test_fixed_volume_size_is_checked():
    net = Plain3DCNN(n_classes=2, volume_size=(32, 32, 24), channels=(4, 8))
    with pytest.raises(ValueError, match="Plain3DCNN was built for spatial size"):
        net(torch.rand(1, 1, 32, 32, 30))


def test_cam_grid_and_target_layer():
    net = Plain3DCNN(n_classes=2, volume_size=(64, 64, 48), channels=(4, 8, 8, 8))
    assert net.cam_grid == (4, 4, 3)
    assert net.cam_target_layer == "features.relu8"


def test_groups_must_divide_channels():
    with pytest.raises(ValueError, match="groups=4 must divide"):
        Plain3DCNN(channels=(6, 8))


def test_generic_hirescam_maps_have_the_cam_grid():
    net = Plain3DCNN(n_classes=3, volume_size=(32, 32, 24), channels=(4, 8)).eval()
    maps = HiResCAM(net, target_layers=net.cam_target_layer)(torch.rand(1, 1, 32, 32, 24), upsample=False)
    assert tuple(maps.shape[-3:]) == net.cam_grid
