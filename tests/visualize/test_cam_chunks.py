"""Specification of the chunked outputs (issue 15) and of the replayed class gradients of the generic path."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from monai.networks.nets import ResNet

from hirescam_ext.networks.axialnet import AxialNet
from hirescam_ext.visualize import GradCAM, HiResCAM, normalize_cam, upsample_axial_maps, upsample_maps

CAMS = {"hirescam": HiResCAM, "gradcam": GradCAM}


def _resnet3d(n_classes: int = 7) -> nn.Module:
    torch.manual_seed(1)
    net = ResNet("basic", [1, 1, 1, 1], [4, 4, 8, 8], spatial_dims=3, n_input_channels=1, num_classes=n_classes)
    g = torch.Generator().manual_seed(5)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return net.double()


def _axialnet() -> AxialNet:
    torch.manual_seed(0)
    return AxialNet(n_classes=5, spatial_size=(64, 64), trunk="small", custom_conv_padding=1).eval()


@pytest.mark.parametrize("kind", ["hirescam", "gradcam"])
@pytest.mark.parametrize("layer", ["layer1", "layer2", "layer3", "layer4"])
def test_replayed_gradients_equal_vmap_gradients(kind, layer):
    net = _resnet3d()
    x = torch.rand(2, 1, 16, 16, 16, dtype=torch.float64)
    vmap = CAMS[kind](net, target_layers=layer, gradient_mode="vmap")
    replay = CAMS[kind](net, target_layers=layer, gradient_mode="replay")
    torch.testing.assert_close(replay.compute_raw(x), vmap.compute_raw(x), rtol=1e-9, atol=1e-12)
    assert (replay.last_gradient_mode, vmap.last_gradient_mode) == ("replay", "vmap")
    # per-sample classes and class chunks (each chunk replays the forward pass) give the same maps
    classes = torch.tensor([[6, 0, 3], [2, 2, 5]])
    chunked = CAMS[kind](net, target_layers=layer, gradient_mode="replay", class_chunk_size=2)
    torch.testing.assert_close(chunked.compute_raw(x, classes), vmap.compute_raw(x, classes), rtol=1e-9, atol=1e-12)


def test_auto_replays_on_resnet_and_learns_the_number_of_outputs():
    net = _resnet3d()
    x = torch.rand(1, 1, 16, 16, 16, dtype=torch.float64)
    cam = HiResCAM(net, target_layers="layer2")
    cam._n_outputs = 3  # a wrong guess of M is corrected by the forward pass
    maps = cam.compute_raw(x)
    assert maps.shape[1] == 7 and cam.last_gradient_mode == "replay" and cam._n_outputs == 7
    torch.testing.assert_close(maps, HiResCAM(net, target_layers="layer2", gradient_mode="vmap").compute_raw(x))


def test_auto_uses_vmap_for_merged_batch_and_slice_activations():
    net = _axialnet()
    x = torch.rand(1, 1, 64, 64, 12)
    cam = HiResCAM(net, target_layers="custom_convs.relu1")
    maps = cam.compute_raw(x, class_idx=[1, 3])
    assert cam.last_gradient_mode == "vmap" and maps.shape[:2] == (1, 2)
    with pytest.raises(ValueError, match="batch"):
        HiResCAM(net, target_layers="custom_convs.relu1", gradient_mode="replay").compute_raw(x, class_idx=[1, 3])


@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_chunked_upsampling_equals_upsampling_all_maps_at_once(chunk):
    net = _axialnet()
    x = torch.rand(2, 1, 64, 64, 12)
    raw = HiResCAM(net).compute_raw(x)
    want = normalize_cam(upsample_axial_maps(raw, x.shape[2:]))
    got = HiResCAM(net, upsample_chunk_size=chunk)(x)
    assert got.shape == (2, 5, 64, 64, 12) and got.dtype == torch.float32
    assert torch.equal(got, want)  # the same operations per (sample, class) map: bit-identical


def test_iter_maps_yields_chunks_that_concatenate_to_the_call():
    net = _axialnet()
    x = torch.rand(1, 1, 64, 64, 12)
    cam = HiResCAM(net)
    chunks = list(cam.iter_maps(x, class_idx=[4, 0, 2], chunk_size=2))
    assert [(c.start, c.stop, c.maps.shape[1]) for c in chunks] == [(0, 2, 2), (2, 3, 1)]
    assert chunks[0].class_idx.tolist() == [[4, 0]] and chunks[1].class_idx.tolist() == [[2]]
    torch.testing.assert_close(torch.cat([c.maps for c in chunks], 1), cam(x, class_idx=[4, 0, 2]), rtol=0, atol=0)
    half = next(cam.iter_maps(x, chunk_size=5, dtype=torch.float16))
    assert half.maps.dtype == torch.float16 and half.maps.shape == (1, 5, 64, 64, 12)


def test_call_writes_into_a_preallocated_output_and_casts():
    net = _resnet3d()
    x = torch.rand(1, 1, 16, 16, 16, dtype=torch.float64)
    cam = GradCAM(net, target_layers="layer3", upsample_chunk_size=3)
    want = normalize_cam(upsample_maps(cam.compute_raw(x), x.shape[2:]))
    out = torch.full((1, 7, 16, 16, 16), float("nan"), dtype=torch.float16)
    got = cam(x, out=out)
    assert got is out
    torch.testing.assert_close(got, want.half())
    torch.testing.assert_close(cam(x, dtype=torch.float32), want.float())
    with pytest.raises(ValueError, match="out has shape"):
        cam(x, out=torch.empty(1, 6, 16, 16, 16))


def test_default_chunk_bounds_the_upsampled_values(monkeypatch):
    import hirescam_ext.visualize.cam_base as cam_base

    monkeypatch.setattr(cam_base, "UPSAMPLE_CHUNK_VALUES", 2 * 64 * 64 * 12)
    seen = []
    real = cam_base.upsample_axial_maps

    def spy(maps, size):
        seen.append(maps.shape[1])
        return real(maps, size)

    monkeypatch.setattr(cam_base, "upsample_axial_maps", spy)
    net = _axialnet()
    x = torch.rand(1, 1, 64, 64, 12)
    maps = HiResCAM(net)(x)
    assert seen == [2, 2, 1] and maps.shape == (1, 5, 64, 64, 12)


def test_normalize_in_place_gives_the_same_values():
    maps = torch.randn(2, 3, 5, 6, 7)
    want = normalize_cam(maps)
    got = normalize_cam(maps.clone(), inplace=True)
    assert torch.equal(got, want)


def test_infinite_raw_maps_still_normalize_like_before():
    net = _axialnet()
    x = torch.rand(1, 1, 64, 64, 12)
    raw = HiResCAM(net).compute_raw(x).clone()
    raw[0, 1, 0, 0, 0] = float("inf")
    cam = HiResCAM(net, upsample_chunk_size=2)
    cam._compute = lambda _x, _c, with_idx=False: (raw, True)  # raw maps with an infinite cell (fp16 overflow)
    got = cam(x)
    want = normalize_cam(upsample_axial_maps(raw, x.shape[2:]))
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
