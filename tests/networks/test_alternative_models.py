"""Specification of the alternative models of the HiResCAM paper's Table 1: CTNet, BodyConv, 3DConv."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hirescam_ext.networks import BodyConv, CTNet, ThreeDConv

M = 4
SMALL = (64, 64, 12)


def _record(store: dict):
    def hook(module, inputs, output):
        store["a"] = output.detach()

    return hook


def _small_ctnet(**kw) -> CTNet:
    torch.manual_seed(0)
    return CTNet(n_classes=M, volume_size=SMALL, trunk="small", conv_padding=1, **kw).eval()


def _small_bodyconv(**kw) -> BodyConv:
    torch.manual_seed(0)
    return BodyConv(n_classes=M, volume_size=SMALL, trunk="small", conv_padding=1, **kw).eval()


def _small_conv3d(**kw) -> ThreeDConv:
    torch.manual_seed(0)
    args = dict(n_classes=M, volume_size=SMALL, channels=(4, 8, 8, 8), reduce_channels=(8, 4), conv_padding=1)
    args.update(kw)
    return ThreeDConv(**args).eval()


SMALL_MODELS = {"ctnet": _small_ctnet, "bodyconv": _small_bodyconv, "conv3d": _small_conv3d}


def test_paper_feature_counts_at_420x420x405():
    assert CTNet().n_features == 7200
    assert BodyConv().n_features == 2000
    three_d = ThreeDConv()
    assert three_d.n_features == 8000 and three_d.cam_grid == (5, 5, 5)


def test_heads_are_128_96_m_and_ctnet_uses_dropout_half():
    net = CTNet(n_classes=80)
    linears = [m for m in net.classifier.modules() if isinstance(m, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(7200, 128), (128, 96), (96, 80)]
    assert [m.p for m in net.classifier.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5]


def test_ctnet_reads_triplets_as_channels():
    assert CTNet().reducing_convs.conv1.in_channels == 135
    assert _small_ctnet().reducing_convs.conv1.in_channels == 4


def test_bodyconv_reads_trunk_features_as_channels():
    assert BodyConv().reducing_convs.conv1.in_channels == 512


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_small_models_map_a_volume_batch_to_logits(name):
    net = SMALL_MODELS[name]()
    out = net(torch.rand(2, 1, *SMALL))
    assert isinstance(out, torch.Tensor) and out.shape == (2, M)


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_single_random_volume_gives_one_row_of_logits(name):
    assert SMALL_MODELS[name]()(torch.rand(1, 1, *SMALL)).shape == (1, M)


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_batch_of_two_equals_each_sample_alone_in_eval_mode(name):
    net = SMALL_MODELS[name]()
    torch.manual_seed(2)
    x = torch.rand(2, 1, *SMALL)
    with torch.no_grad():
        torch.testing.assert_close(net(x), torch.cat([net(x[:1]), net(x[1:])]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_input_of_another_size_is_refused(name):
    with pytest.raises(ValueError, match="built for spatial size"):
        SMALL_MODELS[name]()(torch.rand(1, 1, 64, 64, 15))


@pytest.mark.parametrize("cls", [CTNet, BodyConv])
def test_volume_size_with_z_not_divisible_by_3_is_refused(cls):
    with pytest.raises(ValueError, match="not divisible by 3"):
        cls(volume_size=(64, 64, 13), trunk="small", conv_padding=1)


def test_ctnet_has_no_cam_target_layer():
    assert CTNet.cam_target_layer is None


def test_bodyconv_cam_target_layer_is_its_last_3d_conv_block():
    net = _small_bodyconv()
    seen: dict = {}
    dict(net.named_modules())[net.cam_target_layer].register_forward_hook(_record(seen))
    with torch.no_grad():
        net(torch.rand(2, 1, *SMALL))
    assert net.cam_target_layer == "reducing_convs.relu3"
    assert seen["a"].shape == (2, 16, *net.cam_grid)


def test_conv3d_cam_target_layer_is_its_last_3d_conv_block():
    net = _small_conv3d()
    seen: dict = {}
    dict(net.named_modules())[net.cam_target_layer].register_forward_hook(_record(seen))
    with torch.no_grad():
        net(torch.rand(2, 1, *SMALL))
    assert net.cam_target_layer == "convs.relu6"
    assert seen["a"].shape == (2, 4, *net.cam_grid)


def test_conv3d_small_volume_without_padding_is_refused_with_advice():
    with pytest.raises(ValueError, match="conv_padding=1"):
        ThreeDConv(volume_size=SMALL)


def test_ctnet_small_trunk_grid_without_padding_is_refused():
    with pytest.raises(ValueError, match="too small"):
        CTNet(volume_size=SMALL, trunk="small")


def test_bodyconv_paper_kernels_work_on_a_big_enough_small_trunk_volume():
    net = BodyConv(n_classes=M, volume_size=(192, 192, 81), trunk="small").eval()
    assert net.cam_grid == (1, 1, 1)
    assert net(torch.rand(1, 1, 192, 192, 81)).shape == (1, M)
