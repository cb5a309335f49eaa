"""Analyses of hirescam_ext.reproduce.analysis: lesion grids, Spearman, cascading randomization."""

from __future__ import annotations

import pytest
import torch

from hirescam_ext import AxialNet
from hirescam_ext.reproduce.analysis import (
    cascading_randomization,
    lesion_on_grid,
    make_explainers,
    maps_on_grid,
    randomization_blocks,
    spearman,
)


@pytest.fixture()
def net() -> AxialNet:
    torch.manual_seed(0)
    return AxialNet(n_classes=80, spatial_size=(64, 64), trunk="small", custom_conv_padding=1).eval()


def test_lesion_on_grid_maps_z_to_triplet_axis_first() -> None:
    mask = torch.zeros(64, 64, 48, dtype=torch.bool)
    mask[50, 5, 40] = True
    cells = lesion_on_grid(mask, (16, 2, 2))
    assert cells.shape == (16, 2, 2)
    assert cells.nonzero().tolist() == [[13, 1, 0]]


def test_spearman_is_one_for_monotone_maps_and_zero_for_a_flat_map() -> None:
    a = torch.arange(10.0)
    assert spearman(a, a**3) == pytest.approx(1.0)
    assert spearman(a, torch.zeros(10)) == 0.0


def test_randomization_blocks_start_at_the_output_layer(net: AxialNet) -> None:
    names = [name for name, _ in randomization_blocks(net)]
    assert names[0] == "fc"
    assert names[1] == "custom_convs.conv4"
    assert names.index("trunk.layer4") < names.index("trunk.layer1")


def test_maps_on_grid_are_normalized_and_on_the_requested_grid(net: AxialNet) -> None:
    maps = maps_on_grid(make_explainers(net)["hirescam"], torch.rand(1, 64, 64, 48), [3, 7], (16, 2, 2))
    assert maps.shape == (2, 16, 2, 2)
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0 + 1e-6


def test_cascading_randomization_reports_every_block_and_leaves_the_model_unchanged(net: AxialNet) -> None:
    before = {k: v.clone() for k, v in net.state_dict().items()}
    label = torch.zeros(80)
    label[[2, 11]] = 1
    items = [{"image": torch.rand(1, 64, 64, 12), "label": label}]
    out = cascading_randomization(net, items, seed=1)
    assert out["blocks"][0] == "fc" and out["n_maps"] == 2
    for method in ("hirescam", "gradcam"):
        assert len(out[method]["spearman"]) == len(out["blocks"])
        assert all(v is None or -1.0 <= v <= 1.0 for v in out[method]["spearman"])
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_training_fit_reports_auroc_over_the_given_scans(net: AxialNet) -> None:
    from hirescam_ext.reproduce.analysis import training_fit

    items = []
    for i in range(4):
        label = torch.zeros(80)
        label[i % 2] = 1
        items.append({"image": torch.rand(1, 64, 64, 12), "label": label})
    fit = training_fit(net, items)
    assert fit["n_scans"] == 4
    assert set(fit["per_label"]) == {"h_great_vessel_aneurysm", "h_great_vessel_atherosclerosis"}
    assert 0.0 <= fit["auroc_mean"] <= 1.0
