"""Specification of DensityBands (per-cell soft HU-band fractions) and AxialNet's ``density_bands`` branch."""

from __future__ import annotations

import pytest
import torch

from hirescam_ext.networks import AxialNet
from hirescam_ext.networks.density_bands import DENSITY_BAND_CENTERS_HU, DENSITY_CONTEXT_CENTERS_HU, DensityBands
from hirescam_ext.transforms.intensity import hu_window

_CENTRES = [-1000.0, -950.0, -900.0, -600.0, 0.0, 800.0]


def _slices(hu: torch.Tensor) -> torch.Tensor:
    """HU ``[N, C, X, Y]`` in the bundle's encoding (window [-1000, 800] to [0, 1], centre -0.449)."""
    return hu_window(hu, (-1000.0, 800.0), center=-0.449)


def test_a_value_at_a_band_centre_falls_wholly_in_that_band():
    bands = DensityBands(_CENTRES)
    f = bands.fractions(_slices(torch.full((1, 3, 4, 4), -900.0)), [1, 1])
    assert torch.allclose(f[0, :, 0, 0], torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 0.0]), atol=1e-5)


def test_a_value_between_two_centres_is_split_in_proportion_to_its_distance():
    bands = DensityBands(_CENTRES)
    f = bands.fractions(_slices(torch.full((1, 3, 4, 4), -750.0)), [1, 1])[0, :, 0, 0]  # half way -900 .. -600
    assert f[2] == pytest.approx(0.5, abs=1e-4) and f[3] == pytest.approx(0.5, abs=1e-4)
    f = bands.fractions(_slices(torch.full((1, 3, 4, 4), -150.0)), [1, 1])[0, :, 0, 0]  # a quarter of -600 .. 0
    assert f[3] == pytest.approx(0.25, abs=1e-4) and f[4] == pytest.approx(0.75, abs=1e-4)


def test_band_fractions_sum_to_one_in_every_cell_and_the_ends_take_what_lies_beyond():
    torch.manual_seed(0)
    bands = DensityBands([-900.0, -500.0, 200.0])
    hu = torch.empty(2, 3, 16, 16).uniform_(-1000.0, 800.0)
    f = bands.fractions(_slices(hu), [4, 4])
    assert f.shape == (2, 3, 4, 4)
    assert torch.allclose(f.sum(dim=1), torch.ones(2, 4, 4), atol=1e-5)
    low = bands.fractions(_slices(torch.full((1, 3, 4, 4), -1000.0)), [1, 1])[0, :, 0, 0]
    high = bands.fractions(_slices(torch.full((1, 3, 4, 4), 800.0)), [1, 1])[0, :, 0, 0]
    assert torch.allclose(low, torch.tensor([1.0, 0.0, 0.0])) and torch.allclose(high, torch.tensor([0.0, 0.0, 1.0]))


def _dense_fractions(hu: torch.Tensor, centres: list[float], grid: list[int]) -> torch.Tensor:
    """The definition, one triangular membership per band: 1 at its centre, 0 at the neighbouring centres."""
    c = torch.tensor(centres)
    gaps = c[1:] - c[:-1]
    below, above = torch.cat([gaps[:1], gaps]), torch.cat([gaps, gaps[-1:]])
    d = hu.clamp(c[0], c[-1]).unsqueeze(2) - c.view(1, 1, -1, 1, 1)
    width = torch.where(d < 0, below.view(1, 1, -1, 1, 1), above.view(1, 1, -1, 1, 1))
    member = torch.relu(1.0 - d.abs() / width).mean(dim=1)
    return torch.nn.functional.adaptive_avg_pool2d(member, grid)


@pytest.mark.parametrize("grid", [[4, 4], [2, 8], [1, 1]])
def test_scattered_fractions_equal_the_triangular_membership_definition(grid):
    torch.manual_seed(0)
    hu = torch.empty(3, 3, 32, 32).uniform_(-1100.0, 900.0)
    hu[0, 0, :4, :4] = torch.tensor(_CENTRES[:4]).view(4, 1)  # exact centres
    for centres in (_CENTRES, [-1000.0, -912.5, -600.25, 0.0, 799.5]):  # whole-HU centres use a table lookup
        got = DensityBands(centres).fractions(_slices(hu), grid)
        assert torch.allclose(got, _dense_fractions(hu, centres, grid), atol=1e-5)


@pytest.mark.parametrize("centres", [_CENTRES, [-1000.0, -912.5, -600.25, 0.0, 799.5]])
def test_fractions_pass_the_definitions_gradient_to_the_input(centres):
    # an input-gradient method (vanilla gradients, integrated gradients) differentiates through the branch
    torch.manual_seed(0)
    hu = torch.empty(2, 3, 16, 16).uniform_(-1000.0, 800.0)
    weights = torch.randn(2, len(centres), 4, 4)
    got, want = hu.clone().requires_grad_(), hu.clone().requires_grad_()
    (DensityBands(centres).fractions(_slices(got), [4, 4]) * weights).sum().backward()
    (_dense_fractions(want, centres, [4, 4]) * weights).sum().backward()
    assert got.grad.abs().max() > 0
    assert torch.allclose(got.grad, want.grad, atol=1e-6)


def test_one_ground_glass_pixel_shows_in_its_own_cell_only_as_one_pixel_share():
    hu = torch.full((1, 3, 32, 32), -900.0)  # aerated lung
    hu[0, 1, 20, 5] = -600.0  # one ground-glass pixel in cell (1, 0) of a 2 x 2 grid of 16 x 16 pixels
    f = DensityBands(_CENTRES).fractions(_slices(hu), [2, 2])
    share = 1.0 / (3 * 16 * 16)
    assert float(f[0, 3, 1, 0]) == pytest.approx(share, rel=1e-3)
    assert float(f[0, 3].sum() - f[0, 3, 1, 0]) == pytest.approx(0.0, abs=1e-7)


def test_branch_gives_its_features_on_the_requested_grid():
    out = DensityBands(out_channels=5)(_slices(torch.zeros(3, 3, 64, 64)), [4, 4])
    assert out.shape == (3, 5, 4, 4) and len(DENSITY_BAND_CENTERS_HU) == DensityBands().conv1.in_channels


@pytest.mark.parametrize(
    "kwargs, match",
    [({"centers_hu": [-500.0]}, "at least two increasing"), ({"centers_hu": [0.0, -500.0]}, "at least two increasing"),
     ({"centers_hu": [-1100.0, 0.0]}, "inside the input's window"), ({"out_channels": 0}, "out_channels"),
     ({"input_hu_range": (800.0, -1000.0)}, "high > low"), ({"smoothing": -0.5}, "smoothing"),
     ({"smoothing": float("inf")}, "smoothing"), ({"smoothing": float("nan")}, "smoothing"),
     ({"context_centers_hu": [0.0]}, "context_centers_hu must be at least two"),
     ({"context_centers_hu": [0.0, -300.0]}, "context_centers_hu must be at least two")],
)
def test_bad_settings_are_refused_with_the_reason(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DensityBands(**kwargs)


def test_smoothing_keeps_a_uniform_slice_and_its_border_unchanged():
    """Replicate padding: a uniform slice stays uniform up to its edges (zero padding would darken the border)."""
    x = _slices(torch.full((1, 3, 16, 16), -600.0))
    assert torch.allclose(DensityBands(_CENTRES, smoothing=1.0).smooth(x), x, atol=1e-6)


def test_smoothing_spreads_one_pixel_as_a_normalized_gaussian_of_the_given_width():
    bands = DensityBands(_CENTRES, smoothing=1.5)
    x = torch.zeros(1, 1, 21, 21)
    x[0, 0, 10, 10] = 1.0
    out = bands.smooth(x)[0, 0]
    assert bands.smoothing_radius == 5 and out.sum().item() == pytest.approx(1.0, abs=1e-6)
    xs = torch.arange(21.0) - 10.0
    variance = (out.sum(dim=1) * xs**2).sum().item()  # along x; the truncation at 3 widths trims it a little
    assert variance == pytest.approx(1.5**2, rel=0.03)
    assert torch.allclose(out, out.T, atol=1e-7)


def test_smoothing_moves_noise_out_of_the_neighbouring_bands():
    """Noisy lung at -900 HU: unsmoothed, a third of the pixels leak into the bands around it; smoothed, few do."""
    torch.manual_seed(0)
    x = _slices(-900.0 + 30.0 * torch.randn(1, 3, 64, 64))
    raw = DensityBands(_CENTRES).fractions(x, [1, 1])[0, :, 0, 0]
    smooth = DensityBands(_CENTRES, smoothing=1.5).fractions(x, [1, 1])[0, :, 0, 0]
    assert raw[2] < 0.8 and smooth[2] > 0.9  # band -900


def test_zero_smoothing_gives_the_unsmoothed_fractions():
    torch.manual_seed(0)
    x = _slices(-1000.0 + 1800.0 * torch.rand(2, 3, 32, 32))
    a, b = DensityBands(_CENTRES), DensityBands(_CENTRES, smoothing=0.0)
    assert b.smoothing_radius == 0 and torch.equal(a.fractions(x, [2, 2]), b.fractions(x, [2, 2]))


def test_context_splits_each_value_band_and_summing_over_contexts_gives_the_value_bands():
    torch.manual_seed(0)
    x = _slices(-1000.0 + 1800.0 * torch.rand(2, 3, 16, 16))
    joint = DensityBands(_CENTRES, context_centers_hu=[-900.0, -300.0, 300.0]).fractions(x, [4, 4])
    assert joint.shape == (2, 6 * 3, 4, 4)
    assert torch.allclose(joint.sum(dim=1), torch.ones(2, 4, 4), atol=1e-5)
    value = DensityBands(_CENTRES).fractions(x, [4, 4])
    assert torch.allclose(joint.view(2, 6, 3, 4, 4).sum(dim=2), value, atol=1e-5)


def test_context_is_the_mean_of_the_26_neighbours_with_the_edges_repeated():
    bands = DensityBands(_CENTRES, context_centers_hu=DENSITY_CONTEXT_CENTERS_HU)
    hu = torch.full((1, 3, 5, 5), -850.0)
    hu[0, 1, 2, 2] = 650.0  # one calcified voxel in lung
    ctx = bands.context(hu)
    assert ctx[0, 1, 2, 2].item() == pytest.approx(-850.0)  # its own value is left out
    assert ctx[0, 1, 1, 1].item() == pytest.approx(-850.0 + 1500.0 / 26.0)  # a neighbour sees it once
    assert ctx[0, 0, 2, 2].item() == pytest.approx(-850.0 + 1500.0 / 26.0)  # so does the slice above
    assert torch.allclose(bands.context(torch.full((1, 3, 4, 4), 40.0)), torch.full((1, 3, 4, 4), 40.0))


def test_a_dense_pixel_in_lung_and_in_soft_tissue_fall_in_different_context_bands():
    """The same 0 HU pixel counts as (0 HU, lung context) inside aerated lung and (0 HU, soft tissue) in muscle."""
    centres, context = [-1000.0, -850.0, 0.0, 800.0], [-900.0, -300.0, 0.0]
    bands = DensityBands(centres, context_centers_hu=context)
    lung = torch.full((1, 3, 6, 6), -850.0)
    lung[0, 1, 2, 2] = 0.0
    muscle = torch.full((1, 3, 6, 6), 0.0)
    f_lung = bands.fractions(_slices(lung), [1, 1])[0, :, 0, 0].view(4, 3)
    f_muscle = bands.fractions(_slices(muscle), [1, 1])[0, :, 0, 0].view(4, 3)
    assert f_muscle[2, 2].item() == pytest.approx(1.0, abs=1e-4)  # value 0 HU, context 0 HU
    nodule = f_lung[2] * 108  # the one 0 HU pixel of 108, in context -850 HU: 1/12 of the way -900 .. -300
    assert nodule[0].item() == pytest.approx(11.0 / 12.0, abs=1e-3)
    assert nodule[1].item() == pytest.approx(1.0 / 12.0, abs=1e-3)
    assert nodule[2].item() == pytest.approx(0.0, abs=1e-4)


def _net(**kw):
    return AxialNet(n_classes=4, spatial_size=(64, 64), trunk="small16", custom_conv_padding=1, **kw).eval()


def test_axialnet_concatenates_the_branch_with_the_trunk_before_its_custom_convs():
    net = _net(density_bands=True, density_channels=16)
    assert net.custom_convs.conv1.in_channels == net.trunk.out_channels + 16
    assert net.cam_target_layer == "custom_convs.relu4" and _net().custom_convs.conv1.in_channels == 64
    assert not _net(density_bands="false").use_density
    assert _net(density_bands=[-1000.0, -600.0, 0.0]).density.centers_hu == [-1000.0, -600.0, 0.0]


def test_axialnet_with_density_bands_keeps_hirescam_exact():
    torch.manual_seed(0)
    net = _net(density_bands=True)
    out = net.forward_all(torch.rand(2, 1, 64, 64, 12) - 0.449)
    h = out.attention.shape[2]
    assert torch.allclose(out.attention.sum(dim=(2, 3, 4)) / h + net.fc.bias, out.logits, atol=1e-5)


def test_axialnet_with_density_bands_scripts_and_loads_its_state_dict():
    torch.manual_seed(0)
    net = _net(density_bands=True)
    x = torch.rand(1, 1, 64, 64, 12) - 0.449
    assert torch.equal(torch.jit.script(net)(x), net(x))
    twin = _net(density_bands=True)
    twin.load_state_dict(net.state_dict())
    assert torch.equal(twin(x), net(x))
    with pytest.raises(RuntimeError, match="Unexpected key"):
        _net().load_state_dict(net.state_dict())


def test_axialnet_with_smoothed_density_bands_scripts_and_passes_its_width_on():
    torch.manual_seed(0)
    net = _net(density_bands=True, density_smoothing=1.0)
    assert net.density.smoothing == 1.0 and _net(density_bands=True).density.smoothing_radius == 0
    x = torch.rand(1, 1, 64, 64, 12) - 0.449
    assert torch.allclose(torch.jit.script(net)(x), net(x), atol=1e-6)


def test_axialnet_with_density_context_scripts_keeps_hirescam_exact_and_widens_the_branch():
    torch.manual_seed(0)
    net = _net(density_bands=True, density_context=True)
    assert net.density.n_bands == len(DENSITY_BAND_CENTERS_HU) * len(DENSITY_CONTEXT_CENTERS_HU)
    assert net.density.conv1.in_channels == net.density.n_bands and not _net(density_bands=True).density.use_context
    x = torch.rand(2, 1, 64, 64, 12) - 0.449
    assert torch.allclose(torch.jit.script(net)(x), net(x), atol=1e-6)
    out = net.forward_all(x)
    h = out.attention.shape[2]
    assert torch.allclose(out.attention.sum(dim=(2, 3, 4)) / h + net.fc.bias, out.logits, atol=1e-5)


def test_axialnet_refuses_density_context_without_density_bands():
    with pytest.raises(ValueError, match="needs density_bands"):
        _net(density_context=True)


def test_axialnet_refuses_density_bands_without_custom_convs():
    with pytest.raises(ValueError, match="needs custom_convs=True"):
        _net(density_bands=True, custom_convs=False)
