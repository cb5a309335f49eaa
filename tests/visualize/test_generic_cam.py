"""Specification of the generic (hook + vectorized gradient) HiResCAM / Grad-CAM path on ordinary models."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from monai.networks.nets import DenseNet, ResNet

from hirescam_ext.visualize import GradCAM, HiResCAM

CAMS = {"hirescam": HiResCAM, "gradcam": GradCAM}


def _densenet2d(n_classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    net = DenseNet(
        spatial_dims=2, in_channels=1, out_channels=n_classes, init_features=4, growth_rate=4, block_config=(2, 2)
    )
    return net.double()


def _resnet3d(n_classes: int = 6) -> nn.Module:
    torch.manual_seed(1)
    net = ResNet("basic", [1, 1, 1, 1], [4, 4, 8, 8], spatial_dims=3, n_input_channels=1, num_classes=n_classes)
    return net.double()


def _randomize_batchnorm(net: nn.Module) -> None:
    """Give BatchNorm non-trivial running statistics so eval mode differs from train mode."""
    g = torch.Generator().manual_seed(5)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g, dtype=m.running_mean.dtype) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g, dtype=m.running_var.dtype) + 0.5)


@pytest.mark.parametrize("kind", ["hirescam", "gradcam"])
def test_all_classes_2d_densenet_match_per_class_autograd(kind, reference):
    net = _densenet2d()
    _randomize_batchnorm(net)
    x = torch.rand(2, 1, 24, 24, dtype=torch.float64)
    layer = "features.denseblock2"
    got = CAMS[kind](net, target_layers=layer).compute_raw(x)
    want = reference(net, layer, x, [list(range(5))] * 2, kind)
    assert got.shape == want.shape == (2, 5, 3, 3)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["hirescam", "gradcam"])
def test_all_classes_3d_resnet_match_per_class_autograd(kind, reference):
    net = _resnet3d()
    _randomize_batchnorm(net)
    x = torch.rand(1, 1, 16, 16, 16, dtype=torch.float64)
    got = CAMS[kind](net, target_layers="layer3").compute_raw(x)
    want = reference(net, "layer3", x, [list(range(6))], kind)
    assert got.shape == want.shape and got.ndim == 5
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["hirescam", "gradcam"])
def test_batch_with_different_classes_per_sample_matches_each_sample(kind, reference):
    net = _resnet3d()
    x = torch.rand(2, 1, 16, 16, 16, dtype=torch.float64)
    classes = [[4, 1], [0, 5]]
    got = CAMS[kind](net, target_layers="layer4").compute_raw(x, class_idx=torch.tensor(classes))
    want = reference(net, "layer4", x, classes, kind)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    # and sample 1 alone with its own classes gives the same maps as inside the batch
    alone = CAMS[kind](net, target_layers="layer4").compute_raw(x[1:], class_idx=[0, 5])
    torch.testing.assert_close(got[1:], alone, rtol=1e-9, atol=1e-12)


def test_int_and_sequence_class_idx_select_those_classes():
    net = _densenet2d()
    x = torch.rand(2, 1, 24, 24, dtype=torch.float64)
    cam = HiResCAM(net, target_layers="features.denseblock2")
    full = cam.compute_raw(x)
    torch.testing.assert_close(cam.compute_raw(x, class_idx=3), full[:, 3:4])
    torch.testing.assert_close(cam.compute_raw(x, class_idx=[4, 0]), full[:, [4, 0]])


def test_call_upsamples_to_input_and_normalizes():
    net = _densenet2d()
    x = torch.rand(2, 1, 24, 24, dtype=torch.float64)
    maps = HiResCAM(net, target_layers="features.denseblock2")(x, class_idx=[1, 2])
    assert maps.shape == (2, 2, 24, 24)
    assert maps.min() >= 0 and maps.max() <= 1
    flat_max = maps.flatten(2).amax(-1)
    assert ((flat_max == 1) | (flat_max == 0)).all()


def test_hooks_removed_and_training_mode_restored():
    net = _resnet3d()
    net.train()
    net.layer1.eval()  # a mixed state must come back exactly
    before = {name: m.training for name, m in net.named_modules()}
    cam = HiResCAM(net, target_layers="layer4")
    cam(torch.rand(1, 1, 16, 16, 16, dtype=torch.float64))
    assert {name: m.training for name, m in net.named_modules()} == before
    assert all(len(m._forward_hooks) == 0 and len(m._backward_hooks) == 0 for m in net.modules())
    assert torch.is_grad_enabled()
    assert all(p.grad is None for p in net.parameters())


def test_maps_are_computed_in_eval_mode():
    net = _resnet3d()
    _randomize_batchnorm(net)
    x = torch.rand(2, 1, 16, 16, 16, dtype=torch.float64)
    net.train()
    got = HiResCAM(net, target_layers="layer4").compute_raw(x)
    net.eval()
    want = HiResCAM(net, target_layers="layer4").compute_raw(x)
    torch.testing.assert_close(got, want)


def test_inplace_op_after_target_layer_does_not_corrupt_activations(reference):
    torch.manual_seed(2)

    def build(inplace: bool) -> nn.Module:
        layers = [nn.Conv2d(1, 3, 3), nn.ReLU(inplace=inplace), nn.Conv2d(3, 4, 3), nn.ReLU(inplace=inplace)]
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).double()

    inplace_net, plain_net = build(True), build(False)
    plain_net.load_state_dict(inplace_net.state_dict())
    x = torch.randn(2, 1, 12, 12, dtype=torch.float64)
    got = HiResCAM(inplace_net, target_layers="2").compute_raw(x)
    want = reference(plain_net, "2", x, [[0, 1, 2]] * 2, "hirescam")
    torch.testing.assert_close(got, want)


def test_fallback_loop_matches_vectorized_gradients(monkeypatch):
    net = _densenet2d()
    x = torch.rand(2, 1, 24, 24, dtype=torch.float64)
    fast = HiResCAM(net, target_layers="features.denseblock2", gradient_mode="vmap").compute_raw(x)
    real_grad = torch.autograd.grad
    calls = {"batched": 0}

    def no_vmap(*args, **kwargs):
        if kwargs.get("is_grads_batched"):
            calls["batched"] += 1
            raise RuntimeError("vmap not supported (simulated)")
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", no_vmap)
    slow = HiResCAM(net, target_layers="features.denseblock2", gradient_mode="vmap").compute_raw(x)
    assert calls["batched"] == 1
    torch.testing.assert_close(fast, slow)


def test_class_chunks_give_same_maps():
    net = _densenet2d()
    x = torch.rand(1, 1, 24, 24, dtype=torch.float64)
    full = GradCAM(net, target_layers="features.denseblock2").compute_raw(x)
    chunked = GradCAM(net, target_layers="features.denseblock2", class_chunk_size=2).compute_raw(x)
    torch.testing.assert_close(full, chunked)


def test_bad_layer_and_class_index_raise_clear_errors():
    net = _densenet2d()
    with pytest.raises(ValueError, match="not found"):
        HiResCAM(net, target_layers="no.such.layer")
    plain = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 22 * 22, 2))
    with pytest.raises(ValueError, match=r"target_layers is required.*candidate layers: \['0', '1'\]"):
        HiResCAM(plain)
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        HiResCAM(net, target_layers="features.denseblock2").compute_raw(torch.rand(1, 1, 24, 24).double(), 7)


def test_works_when_caller_disabled_autograd():
    net = _resnet3d()
    x = torch.rand(1, 1, 16, 16, 16, dtype=torch.float64)
    want = HiResCAM(net, target_layers="layer4").compute_raw(x)
    with torch.no_grad():
        torch.testing.assert_close(HiResCAM(net, target_layers="layer4").compute_raw(x), want)
    with torch.inference_mode():
        x_inference = x.clone()
        torch.testing.assert_close(HiResCAM(net, target_layers="layer4").compute_raw(x_inference), want)
    assert torch.is_grad_enabled()


def test_stock_monai_models_get_a_default_target_layer():
    x = torch.rand(1, 1, 16, 16, 16, dtype=torch.float64)
    resnet = _resnet3d()
    assert HiResCAM(resnet).target_layers == "layer4"
    torch.testing.assert_close(HiResCAM(resnet).compute_raw(x), HiResCAM(resnet, "layer4").compute_raw(x))
    densenet = _densenet2d()
    assert GradCAM(densenet).target_layers == "class_layers.relu"
