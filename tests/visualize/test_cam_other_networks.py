"""Generic HiResCAM / Grad-CAM on the paper's alternative models (BodyConv, 3DConv) and CTNet's refusal."""

from __future__ import annotations

import pytest
import torch

from hirescam_ext.networks import BodyConv, CTNet, ThreeDConv
from hirescam_ext.visualize import GradCAM, HiResCAM, normalize_cam, upsample_axial_maps, upsample_maps

CAMS = {"hirescam": HiResCAM, "gradcam": GradCAM}


def _bodyconv() -> BodyConv:
    torch.manual_seed(0)
    return BodyConv(n_classes=4, volume_size=(64, 64, 48), trunk="small", conv_padding=1).double().eval()


def _threedconv() -> ThreeDConv:
    torch.manual_seed(0)
    net = ThreeDConv(
        n_classes=4, volume_size=(32, 32, 32), channels=(4, 8, 8, 8), reduce_channels=(8, 4), conv_padding=1
    )
    return net.double().eval()


@pytest.mark.parametrize("kind", ["hirescam", "gradcam"])
def test_bodyconv_default_target_matches_autograd_and_upsamples_slice_axis_to_z(kind, reference):
    net = _bodyconv()
    x = torch.rand(2, 1, 64, 64, 48, dtype=torch.float64)
    cam = CAMS[kind](net)
    raw = cam.compute_raw(x)
    want = reference(net, net.cam_target_layer, x, [list(range(4))] * 2, kind)
    torch.testing.assert_close(raw, want, rtol=1e-9, atol=1e-12)
    # BodyConv's map is [B, M, H', D1', D2']: its slice axis must land on Z of the [X, Y, Z] volume
    torch.testing.assert_close(cam(x), normalize_cam(upsample_axial_maps(raw, (64, 64, 48))))


@pytest.mark.parametrize("kind", ["hirescam", "gradcam"])
def test_threedconv_layer_matches_autograd_and_upsamples_in_input_axis_order(kind, reference):
    net = _threedconv()
    x = torch.rand(2, 1, 32, 32, 32, dtype=torch.float64)
    cam = CAMS[kind](net, target_layers="convs.relu3")
    classes = torch.tensor([[3], [1]])
    raw = cam.compute_raw(x, class_idx=classes)
    want = reference(net, "convs.relu3", x, classes.tolist(), kind)
    torch.testing.assert_close(raw, want, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(cam(x, class_idx=classes), normalize_cam(upsample_maps(raw, (32, 32, 32))))
    assert CAMS[kind](net)(x).shape == (2, 4, 32, 32, 32)  # default target: the last 3D conv block


def test_ctnet_has_no_cam_target_layer():
    net = CTNet(n_classes=4, volume_size=(64, 64, 48), trunk="small", conv_padding=1)
    with pytest.raises(ValueError, match="cam_target_layer"):
        HiResCAM(net)
