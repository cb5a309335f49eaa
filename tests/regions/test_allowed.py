"""AllowedRegionsd: the paper's label -> organ rules, downsampling modes, and the pipeline order with augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose

from hirescam_ext.data.radchestct import write_location_table
from hirescam_ext.labels import LABEL_NAMES, LOCATION_NAMES
from hirescam_ext.regions.allowed import (
    AllowedRegionsd,
    allowed_regions,
    attention_grid_size,
    lung_sides,
    organ_masks_on_grid,
)
from hirescam_ext.regions.layout import ToAttentionLayoutd
from hirescam_ext.transforms.augmentation import RandFlipRot90d

HEART = LABEL_NAMES.index("h_great_vessel_aneurysm")
NODULE = LABEL_NAMES.index("lung_nodule") if "lung_nodule" in LABEL_NAMES else LABEL_NAMES.index("lung_atelectasis")
OTHER_LUNG = LABEL_NAMES.index("lung_bronchiectasis")
GRID = (3, 3, 3)  # D1 (X), D2 (Y), H


def _organs():
    """[1, 12, 12, 9]: left lung X 0-3 (cell 0), heart X 4-7 (cell 1), right lung X 8-11 (cell 2), all Y and Z."""
    lab = torch.zeros((1, 12, 12, 9), dtype=torch.uint8)
    lab[0, 0:4] = 3
    lab[0, 4:8] = 2
    lab[0, 8:12] = 1
    return lab


def _label(*indices):
    vec = torch.zeros(len(LABEL_NAMES))
    vec[list(indices)] = 1
    return vec


def _columns(region):
    """Which X cells are set (over all Y, H) for one label."""
    return [int(c) for c in torch.nonzero(region.sum(dim=(1, 2)) > 0).flatten()]


def test_heart_label_gets_only_heart_cells():
    g = allowed_regions(_organs(), _label(HEART), {}, grid=GRID)
    assert _columns(g[HEART]) == [1] and g[HEART].sum() == 9


def test_right_only_lung_label_gets_only_right_lung_cells():
    g = allowed_regions(_organs(), _label(NODULE), {LABEL_NAMES[NODULE]: ["right_lower", "lung"]}, grid=GRID)
    assert _columns(g[NODULE]) == [2]


def test_left_location_gets_left_lung():
    g = allowed_regions(_organs(), _label(NODULE), {LABEL_NAMES[NODULE]: ["left_lung"]}, grid=GRID)
    assert _columns(g[NODULE]) == [0]


@pytest.mark.parametrize("locations", [{}, None, {"lung_nodule": ["lung"]}, {"lung_nodule": ["right", "left_upper"]}])
def test_unknown_or_both_sides_give_both_lungs(locations):
    if locations:
        locations = {LABEL_NAMES[NODULE]: v for v in locations.values()}
    g = allowed_regions(_organs(), _label(NODULE), locations, grid=GRID)
    assert _columns(g[NODULE]) == [0, 2]


def test_absent_labels_are_empty_even_with_locations():
    g = allowed_regions(_organs(), _label(HEART), {LABEL_NAMES[OTHER_LUNG]: ["right_lung"]}, grid=GRID)
    assert g[OTHER_LUNG].sum() == 0 and g.sum() == g[HEART].sum()
    assert g.shape == (len(LABEL_NAMES), *GRID) and g.dtype == torch.float32


def test_lung_sides_vocabulary():
    assert lung_sides(["right_mid"]) == (True, False) and lung_sides(["left"]) == (False, True)
    assert lung_sides(["lung", "airways"]) == (True, True) and lung_sides([]) == (True, True)


def test_nearest_and_area_modes_differ_on_a_partial_cell():
    lab = torch.zeros((1, 12, 12, 9), dtype=torch.uint8)
    lab[0, 2, :, :] = 1  # right lung covers 1/4 of the X extent of cell 0, through its centre voxel
    nearest = organ_masks_on_grid(lab, GRID, mode="nearest")[0]
    area_half = organ_masks_on_grid(lab, GRID, mode="area", area_threshold=0.5)[0]
    area_quarter = organ_masks_on_grid(lab, GRID, mode="area", area_threshold=0.25)[0]
    assert nearest[0].all() and not area_half.any() and area_quarter[0].all()


def test_nearest_picks_the_centre_slice_of_each_triplet():
    lab = torch.zeros((1, 12, 12, 9), dtype=torch.uint8)
    lab[..., 4] = 2  # slice 4 = centre of triplet 1 (slices 3, 4, 5)
    lab[..., 6] = 2  # slice 6 = first slice of triplet 2
    heart = organ_masks_on_grid(lab, GRID, mode="nearest")[1]
    assert heart[:, :, 1].all() and not heart[:, :, 2].any() and not heart[:, :, 0].any()


def test_dilation_grows_by_one_cell():
    lab = torch.zeros((1, 15, 15, 15), dtype=torch.uint8)
    lab[0, 6:9, 6:9, 6:9] = 2
    grid = (5, 5, 5)
    plain = organ_masks_on_grid(lab, grid, mode="area", area_threshold=1.0)[1]
    dilated = organ_masks_on_grid(lab, grid, mode="area", area_threshold=1.0, dilation=1)[1]
    assert plain.sum() == 1 and dilated.sum() == 27


def test_full_resolution_mode_for_figures():
    g = allowed_regions(_organs(), _label(HEART), {}, mode="full")
    assert g.shape == (len(LABEL_NAMES), 12, 12, 9) and torch.equal(g[HEART] > 0, _organs()[0] == 2)


def test_paper_grid_size():
    assert attention_grid_size((420, 420, 405)) == (6, 6, 135)
    assert attention_grid_size((128, 128, 96), custom_conv_padding=1) == (4, 4, 32)


def test_transform_reads_the_location_csv(tmp_path):
    write_location_table(tmp_path / "loc.csv", {LABEL_NAMES[NODULE]: ["left_lower"]})
    data = {"organs": _organs(), "label": _label(NODULE), "locations": str(tmp_path / "loc.csv")}
    item = AllowedRegionsd(grid=GRID)(data)
    assert _columns(item["regions"][NODULE]) == [0]


def test_transform_accepts_the_labelers_matrix():
    matrix = np.zeros((len(LABEL_NAMES), len(LOCATION_NAMES)), dtype=np.uint8)
    matrix[NODULE, LOCATION_NAMES.index("right_upper")] = 1
    item = AllowedRegionsd(grid=GRID)({"organs": _organs(), "label": _label(NODULE), "locations": matrix})
    assert _columns(item["regions"][NODULE]) == [2]


def test_missing_organs_key_is_a_clear_error():
    with pytest.raises(KeyError, match="organs"):
        AllowedRegionsd(grid=GRID)({"label": _label(HEART)})


def test_an_organ_map_that_does_not_fit_the_grid_is_named_by_its_file():
    from monai.data import MetaTensor

    organs = MetaTensor(torch.zeros((1, 12, 12, 18), dtype=torch.uint8), meta={"filename_or_obj": "/data/o7.nii.gz"})
    with pytest.raises(ValueError, match=r"^/data/o7.nii.gz: .*organ map"):
        AllowedRegionsd(grid=GRID)({"organs": organs, "label": _label(HEART)})


@pytest.mark.parametrize("seed", range(6))
def test_regions_follow_augmentation_and_end_in_attention_layout(seed):
    """G_true computed before augmentation equals G_true recomputed from the augmented organ map."""
    organs = torch.zeros((1, 12, 12, 9), dtype=torch.uint8)
    organs[0, 0:4, 0:8, 0:6] = 3  # asymmetric blocks so every flip/rotation changes the grid
    organs[0, 8:12, 4:12, 3:9] = 1
    organs[0, 4:8, 8:12, 0:3] = 2
    label = _label(HEART, NODULE)
    pipeline = Compose(
        [
            AllowedRegionsd(grid=GRID, mode="area"),
            RandFlipRot90d(("organs", "regions"), flip_prob=0.9, rot_prob=0.9).set_random_state(seed=seed),
        ]
    )
    out = pipeline({"organs": organs, "label": label, "locations": {}})
    expected = allowed_regions(out["organs"], label, {}, grid=GRID, mode="area")
    assert torch.equal(out["regions"], expected)
    final = ToAttentionLayoutd()(out)["regions"]
    assert final.shape == (len(LABEL_NAMES), GRID[2], GRID[0], GRID[1])
    assert torch.equal(final, out["regions"].permute(0, 3, 1, 2))


def test_grid_from_network_parameters_for_the_demo_size():
    organs = torch.zeros((1, 128, 128, 96), dtype=torch.uint8)
    organs[0, 64:, :, :] = 1
    with pytest.raises(ValueError, match="too small"):
        AllowedRegionsd()({"organs": organs, "label": _label(NODULE)})
    item = AllowedRegionsd(custom_conv_padding=1)({"organs": organs, "label": _label(NODULE)})
    assert item["regions"].shape == (len(LABEL_NAMES), 4, 4, 32)
    assert _columns(item["regions"][NODULE]) == [2, 3]
