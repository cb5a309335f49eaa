"""Specification of the initialization helpers: Kaiming custom convs, prior output bias, prepare_network, tied and
shared per-cell fully connected weights."""

from __future__ import annotations

import math

import pytest
import torch

from hirescam_ext.networks import (
    AxialNet,
    Plain3DCNN,
    init_output_bias,
    log_prior_odds,
    output_layer,
    prepare_network,
    share_fc_cells,
    tie_fc_cells,
)


def _small(**kw):
    return AxialNet(n_classes=4, spatial_size=(64, 64), trunk="small", custom_conv_padding=1, **kw)


def test_output_bias_is_the_log_prior_odds():
    net = init_output_bias(_small(), [0.5, 0.1, 0.01, 0.9])
    expected = [0.0, math.log(0.1 / 0.9), math.log(0.01 / 0.99), math.log(0.9 / 0.1)]
    assert torch.allclose(net.fc.bias, torch.tensor(expected), atol=1e-5)


def test_absent_label_gets_a_finite_bias():
    bias = log_prior_odds([0.0, 1.0])
    assert torch.isfinite(bias).all() and bias[0] < -6 and bias[1] > 6


def test_prevalence_count_must_match_the_outputs():
    with pytest.raises(ValueError, match="3 prevalences for an output layer of 4 labels"):
        init_output_bias(_small(), [0.1, 0.2, 0.3])


def test_disabled_prior_leaves_the_bias_alone():
    net = _small()
    before = net.fc.bias.detach().clone()
    init_output_bias(net, [0.1] * 4, enabled="false")
    assert torch.equal(net.fc.bias, before)


def test_output_layer_of_other_models_is_their_last_linear():
    net = Plain3DCNN(n_classes=3, channels=(4, 8))
    assert output_layer(net) is net.fc


def test_prior_bias_keeps_hirescam_exact():
    net = init_output_bias(_small(), [0.2, 0.05, 0.3, 0.01]).eval()
    out = net.forward_all(torch.rand(1, 1, 64, 64, 12))
    h = out.attention.shape[2]
    assert torch.allclose(out.logits, out.attention.sum(dim=(2, 3, 4)) / h + net.fc.bias, atol=1e-5)


def test_kaiming_custom_convs_give_logits_that_differ_between_scans():
    # PyTorch's default init shrinks the signal through the four un-normalized custom convs: the logits of
    # different scans are nearly equal at the start, and so are their gradients (issue 13's "6e-4 spread")
    x = torch.rand(4, 1, 64, 64, 12) - 0.449
    spread = {}
    for init in ("kaiming", "pytorch"):
        torch.manual_seed(1)
        net = _small(custom_conv_init=init).eval()
        with torch.no_grad():
            spread[init] = float(net(x).std(dim=0).mean())
    assert spread["kaiming"] > 10 * spread["pytorch"]


def test_unknown_custom_conv_init_is_refused():
    with pytest.raises(ValueError, match="custom_conv_init"):
        _small(custom_conv_init="xavier")


def test_prepare_network_sets_prior_and_channels_last():
    net = prepare_network(_small(), "cpu", label_prior=[0.5] * 4, channels_last=True)
    assert torch.allclose(net.fc.bias, torch.zeros(4), atol=1e-6)
    assert net.trunk.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_prepare_network_skips_the_prior_when_switched_off():
    net = _small()
    before = net.fc.bias.detach().clone()
    prepare_network(net, "cpu", label_prior=[0.5] * 4, output_bias_prior="false")
    assert torch.equal(net.fc.bias, before)


def test_compile_switch_keeps_outputs_and_state_dict_names():
    torch.manual_seed(0)
    net = AxialNet(n_classes=3, spatial_size=(64, 64), trunk="small", custom_conv_padding=1).eval()
    x = torch.rand(1, 1, 64, 64, 6)
    with torch.no_grad():
        before, before_all = net(x), net.forward_all(x).attention
    keys = list(net.state_dict())
    compiled = prepare_network(net, "cpu", compile="true", compile_backend="eager")
    with torch.no_grad():
        assert torch.allclose(compiled(x), before, atol=1e-6)
        assert torch.allclose(compiled.forward_all(x).attention, before_all, atol=1e-6)
    assert list(compiled.state_dict()) == keys
    assert compiled.forward is not AxialNet.forward.__get__(compiled)  # wrapped, not the plain method


def test_tied_fc_cells_start_equal_in_every_cell_with_different_labels_and_features():
    net = tie_fc_cells(AxialNet(n_classes=4, spatial_size=(64, 64), trunk="small16", custom_conv_padding=1))
    maps = net.fc_weight_maps()  # [M, F, 4, 4]
    assert torch.equal(maps, maps[:, :, :1, :1].expand_as(maps))
    v = maps[:, :, 0, 0]
    assert v.unique().numel() == v.numel() and float(v.abs().max()) <= 1 / math.sqrt(maps[0].numel())


def test_tied_fc_cells_make_axialnet_global_average_pooling_and_keep_hirescam_exact():
    net = tie_fc_cells(AxialNet(n_classes=4, spatial_size=(64, 64), trunk="small16", custom_conv_padding=1))
    torch.nn.init.zeros_(net.fc.bias)
    net.eval()
    out = net.forward_all(torch.rand(2, 1, 64, 64, 12))
    pooled = out.features.mean(dim=1).sum(dim=(2, 3))  # [B, F]: slice mean, summed over the cells
    assert torch.allclose(out.logits, pooled @ net.fc_weight_maps()[:, :, 0, 0].T, atol=1e-5)
    h = out.attention.shape[2]
    assert torch.allclose(out.logits, out.attention.sum(dim=(2, 3, 4)) / h, atol=1e-5)


def test_tying_needs_a_per_cell_fully_connected_layer():
    with pytest.raises(ValueError, match="fc_weight_maps"):
        tie_fc_cells(Plain3DCNN(n_classes=3, channels=(4, 8)))


def test_shared_fc_cells_stay_equal_in_every_cell_after_adam_steps():
    torch.manual_seed(0)
    net = share_fc_cells(AxialNet(n_classes=4, spatial_size=(64, 64), trunk="small16", custom_conv_padding=1))
    start = net.fc_weight_maps().detach().clone()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-7)
    for _ in range(3):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            net(torch.rand(2, 1, 64, 64, 12)), torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    maps = net.fc_weight_maps().detach()
    assert not torch.equal(maps, start)  # it trained
    assert torch.equal(maps, maps[:, :, :1, :1].expand_as(maps))  # and every cell got the same update


def test_tied_but_not_shared_fc_cells_part_after_a_step():
    torch.manual_seed(0)
    net = tie_fc_cells(AxialNet(n_classes=4, spatial_size=(64, 64), trunk="small16", custom_conv_padding=1))
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    net(torch.rand(2, 1, 64, 64, 12)).sum().backward()
    opt.step()
    maps = net.fc_weight_maps().detach()
    assert not torch.equal(maps, maps[:, :, :1, :1].expand_as(maps))


def test_sharing_needs_a_per_cell_fully_connected_layer():
    with pytest.raises(ValueError, match="fc_weight_maps"):
        share_fc_cells(Plain3DCNN(n_classes=3, channels=(4, 8)))
