"""Specification of HiResCAM / Grad-CAM on AxialNet: the forward-only closed form (paper eq. 9) against autograd."""

from __future__ import annotations

import pytest
import torch

from hirescam_ext.networks.axialnet import AxialNet
from hirescam_ext.visualize import GradCAM, HiResCAM

CAMS = {"hirescam": HiResCAM, "gradcam": GradCAM}
N_CLASSES = 7
SPATIAL = (96, 64)  # small trunk (stride 32), padding 1: grid D1 x D2 = 3 x 2
Z = 12  # H = 4 triplets


def _net(pooling: str = "mean", custom_convs: bool = True, seed: int = 0) -> AxialNet:
    torch.manual_seed(seed)
    net = AxialNet(
        n_classes=N_CLASSES,
        spatial_size=SPATIAL,
        trunk="small",
        custom_conv_padding=1,
        slice_pooling=pooling,
        custom_convs=custom_convs,
    ).double()
    with torch.no_grad():
        net.fc.bias.normal_()
    return net.eval()


def _x(batch: int = 2, seed: int = 3) -> torch.Tensor:
    return torch.rand(batch, 1, *SPATIAL, Z, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-300))


@pytest.mark.parametrize("pooling", ["mean", "max"])
@pytest.mark.parametrize("kind", ["hirescam", "gradcam"])
def test_closed_form_equals_autograd_definition_for_all_classes(kind, pooling, reference):
    net = _net(pooling)
    x = _x()
    cam = CAMS[kind](net)
    assert cam.closed_form
    got = cam.compute_raw(x)
    want = reference(net, net.cam_target_layer, x, [list(range(N_CLASSES))] * 2, kind, split=net.split_slices)
    assert got.shape == want.shape == (2, N_CLASSES, Z // 3, 3, 2)
    assert want.abs().max() > 0
    assert _rel_err(got, want) <= 1e-5


def test_max_pooling_hirescam_lives_on_the_argmax_slice_only():
    net = _net("max")
    x = _x()
    out = net.forward_all(x)
    maps = HiResCAM(net).compute_raw(x)
    top = out.slice_scores.argmax(-1)  # [B, M]
    per_slice = maps.abs().flatten(3).sum(-1)  # [B, M, H]
    off_top = per_slice.scatter(-1, top[..., None], 0.0)
    assert (off_top == 0).all()
    torch.testing.assert_close(maps.sum((2, 3, 4)), out.logits - net.fc.bias)


def test_hirescam_completeness_map_sums_to_score_minus_bias():
    net = _net("mean")
    x = _x()
    maps = HiResCAM(net).compute_raw(x)
    logits = net(x)
    torch.testing.assert_close(maps.sum((2, 3, 4)), logits - net.fc.bias, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["hirescam", "gradcam"])
def test_generic_path_on_cam_target_layer_splits_slices_and_agrees(kind):
    net = _net("mean")
    x = _x()
    closed = CAMS[kind](net).compute_raw(x)
    generic_cam = CAMS[kind](net, target_layers=net.cam_target_layer, use_closed_form=False)
    assert not generic_cam.closed_form
    torch.testing.assert_close(generic_cam.compute_raw(x), closed, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["hirescam", "gradcam"])
def test_slice_aware_generic_path_on_an_earlier_per_slice_layer(kind, reference):
    net = _net("mean")
    x = _x()
    layer = "custom_convs.relu2"
    got = CAMS[kind](net, target_layers=layer).compute_raw(x, class_idx=torch.tensor([[0, 6], [3, 3]]))
    want = reference(net, layer, x, [[0, 6], [3, 3]], kind, split=net.split_slices)
    assert got.shape[:3] == (2, 2, Z // 3)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["hirescam", "gradcam"])
def test_no_custom_conv_ablation_on_trunk_layer4(kind, reference):
    net = _net("mean", custom_convs=False)
    x = _x()
    assert net.cam_target_layer == "trunk.layer4"
    closed = CAMS[kind](net).compute_raw(x)
    want = reference(net, "trunk.layer4", x, [list(range(N_CLASSES))] * 2, kind, split=net.split_slices)
    assert _rel_err(closed, want) <= 1e-5
    generic = CAMS[kind](net, target_layers="trunk.layer4", use_closed_form=False, slice_split=True).compute_raw(x)
    torch.testing.assert_close(generic, want, rtol=1e-9, atol=1e-12)


def test_class_subset_and_per_sample_classes_from_closed_form():
    net = _net("mean")
    x = _x()
    cam = HiResCAM(net)
    full = cam.compute_raw(x)
    sub = cam.compute_raw(x, class_idx=torch.tensor([[5, 1], [2, 2]]))
    torch.testing.assert_close(sub[0], full[0, [5, 1]])
    torch.testing.assert_close(sub[1], full[1, [2, 2]])


def test_call_returns_volume_maps_normalized_over_the_whole_volume():
    net = _net("mean")
    x = _x()
    maps = HiResCAM(net)(x)
    assert maps.shape == (2, N_CLASSES, *SPATIAL, Z)
    assert maps.min() >= 0 and maps.max() <= 1
    peaks = maps.flatten(2).amax(-1)
    assert ((peaks == 1) | (peaks == 0)).all()
    raw = HiResCAM(net)(x, upsample=False, normalize=False)
    torch.testing.assert_close(raw, HiResCAM(net).compute_raw(x))


def test_closed_form_restores_training_mode_and_needs_no_backward():
    net = _net("mean").train()
    before = {name: m.training for name, m in net.named_modules()}
    HiResCAM(net)(_x(1))
    assert {name: m.training for name, m in net.named_modules()} == before
    assert all(p.grad is None for p in net.parameters())
