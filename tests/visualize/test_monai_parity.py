"""How our maps line up with ``monai.visualize.GradCAM`` (the README and ``CAMBase`` docstring say so)."""

from __future__ import annotations

import torch
from monai.networks.nets import resnet18
from monai.visualize import GradCAM as MonaiGradCAM
from monai.visualize.class_activation_maps import default_normalizer

from hirescam_ext import GradCAM
from hirescam_ext.visualize.postprocess import normalize_cam


def test_monai_default_normalizer_inverts_relative_to_ours() -> None:
    maps = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])  # [B=1, K=1, 2, 2]
    ours, theirs = normalize_cam(maps), default_normalizer(maps)
    assert ours.flatten().argmax() == 3 and theirs.flatten().argmax() == 0
    assert torch.allclose(ours + theirs, torch.ones_like(ours))


def test_monai_gradcam_raw_map_equals_ours_after_a_relu_on_a_stock_resnet() -> None:
    """On the target layer's grid MONAI's map is ReLU(ours): same weights (mean gradient), same sum over features."""
    torch.manual_seed(0)
    net = resnet18(spatial_dims=3, n_input_channels=1, num_classes=3).eval()
    x = torch.rand(1, 1, 32, 32, 32)
    theirs = MonaiGradCAM(net, target_layers="layer4", postprocessing=lambda m: m).compute_map(x, class_idx=1)
    ours = GradCAM(net, target_layers="layer4").compute_raw(x, class_idx=[1])
    assert theirs.shape == ours.shape
    assert torch.allclose(theirs.detach(), ours.detach().clamp_min(0), atol=1e-6)
