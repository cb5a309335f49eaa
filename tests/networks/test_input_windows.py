"""Specification of InputWindows (extra HU windows computed inside the network) and AxialNet's ``extra_windows``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hirescam_ext.networks import AxialNet
from hirescam_ext.networks.input_windows import InputWindows, widen_conv_input
from hirescam_ext.transforms.intensity import hu_window

_HU = torch.linspace(-1200.0, 1500.0, 271).reshape(1, 1, -1)


def test_extra_window_equals_windowing_the_hu_directly():
    x = hu_window(_HU, (-1000.0, 800.0), center=-0.449)
    out = InputWindows([(-1000.0, -300.0), (-160.0, 240.0)])(x)
    assert out.shape == (1, 3, 271)
    assert torch.equal(out[:, :1], x)
    assert torch.allclose(out[:, 1:2], hu_window(_HU, (-1000.0, -300.0), center=-0.449), atol=1e-5)
    assert torch.allclose(out[:, 2:3], hu_window(_HU, (-160.0, 240.0), center=-0.449), atol=1e-5)


def test_extra_window_follows_the_input_encoding():
    x = hu_window(_HU, (-1100.0, 900.0), center=0.0)
    lung = InputWindows([(-1000.0, -400.0)], input_hu_range=(-1100.0, 900.0), center=0.0)(x)[:, 1:]
    assert torch.allclose(lung, hu_window(_HU, (-1000.0, -400.0)), atol=1e-5)


@pytest.mark.parametrize(
    "windows, match",
    [([(-1200.0, -300.0)], "inside the input's window"), ([(-300.0, -1000.0)], "low < high"), ([], "empty"),
     ([(-1000.0,)], r"\(low, high\)")],
)
def test_bad_windows_are_refused_with_the_reason(windows, match):
    with pytest.raises(ValueError, match=match):
        InputWindows(windows)


def test_widened_conv_with_copied_weights_gives_the_original_output_on_repeated_input():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 7, stride=2, padding=3, bias=False)
    wide = widen_conv_input(conv, 3, copy_weights=True)
    x = torch.rand(2, 3, 16, 16)
    assert wide.in_channels == 9 and wide.stride == conv.stride
    assert torch.allclose(wide(torch.cat([x, x, x], 1)), conv(x), atol=1e-5)


def test_widened_conv_keeps_the_original_weights_and_draws_new_ones_for_the_extra_channels():
    conv = nn.Conv2d(3, 8, 7, bias=False)
    wide = widen_conv_input(conv, 2, copy_weights=False)
    assert torch.equal(wide.weight[:, :3], conv.weight)
    assert not torch.equal(wide.weight[:, 3:], conv.weight) and wide.weight[:, 3:].std() > 0


def _net(**kw):
    return AxialNet(n_classes=4, spatial_size=(64, 64), trunk="small16", custom_conv_padding=1, **kw).eval()


def test_axialnet_with_a_lung_window_feeds_six_channels_per_triplet_to_its_trunk():
    net = _net(extra_windows=[(-1000, -300)])
    assert net.trunk.conv1.in_channels == 6 and net.input_windows.windows == [(-1000.0, -300.0)]
    assert _net().trunk.conv1.in_channels == 3 and isinstance(_net().input_windows, nn.Identity)


def test_axialnet_with_extra_windows_keeps_hirescam_exact():
    torch.manual_seed(0)
    net = _net(extra_windows=[(-1000, -300)])
    out = net.forward_all(torch.rand(2, 1, 64, 64, 12) - 0.449)
    h = out.attention.shape[2]
    assert torch.allclose(out.attention.sum(dim=(2, 3, 4)) / h + net.fc.bias, out.logits, atol=1e-5)


def test_axialnet_with_extra_windows_scripts_and_loads_its_state_dict():
    torch.manual_seed(0)
    net = _net(extra_windows=[(-1000, -300)])
    x = torch.rand(1, 1, 64, 64, 12) - 0.449
    assert torch.equal(torch.jit.script(net)(x), net(x))
    twin = _net(extra_windows=[[-1000.0, -300.0]])
    twin.load_state_dict(net.state_dict())
    assert torch.equal(twin(x), net(x))
    with pytest.raises(RuntimeError, match="size mismatch"):
        _net().load_state_dict(net.state_dict())


def test_lung_window_separates_lung_densities_the_wide_window_compresses():
    hu = torch.tensor([-850.0, -620.0]).reshape(1, 1, 2)  # aerated lung, ground glass
    out = InputWindows([(-1000.0, -300.0)])(hu_window(hu, center=-0.449))[0]
    assert float(out[1, 1] - out[1, 0]) == pytest.approx(230 / 700, abs=1e-4)
    assert float(out[0, 1] - out[0, 0]) == pytest.approx(230 / 1800, abs=1e-4)
