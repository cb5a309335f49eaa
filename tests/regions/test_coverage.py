"""Lesion coverage of G_true on the attention grid, and the warning when downsampling drops a whole organ."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from hirescam_ext.regions import allowed as allowed_module
from hirescam_ext.regions.allowed import organ_masks_on_grid
from hirescam_ext.regions.coverage import allowed_fraction, lesion_cells, lesion_coverage


def _lesion(*cells):
    """[12, 12, 6] lesion with one voxel in each given (d1, d2, h) cell of a (2, 2, 2) grid (6 x 6 x 3 cells)."""
    m = np.zeros((12, 12, 6), bool)
    for d1, d2, h in cells:
        m[6 * d1 + 2, 6 * d2 + 3, 3 * h + 1] = True
    return m


def test_lesion_cells_marks_every_cell_that_holds_a_lesion_voxel():
    cells = lesion_cells(_lesion((0, 0, 0), (1, 1, 1)), (2, 2, 2))
    assert cells.dtype == torch.bool and cells.shape == (2, 2, 2)
    assert cells[0, 0, 0] and cells[1, 1, 1] and int(cells.sum()) == 2


def test_lesion_cells_ignores_slices_beyond_the_last_full_triplet():
    m = np.zeros((12, 12, 7), bool)
    m[0, 0, 6] = True  # slice 6 belongs to no triplet of a 2-triplet grid
    assert not lesion_cells(m, (2, 2, 2)).any()


def test_lesion_coverage_is_the_allowed_share_of_the_lesion_cells():
    region = torch.zeros((2, 2, 2), dtype=torch.bool)
    region[1, 1, 1] = True
    assert lesion_coverage(region, _lesion((0, 0, 0), (1, 1, 1))) == pytest.approx(0.5)
    assert lesion_coverage(region, _lesion((1, 1, 1))) == pytest.approx(1.0)
    assert lesion_coverage(torch.zeros((2, 2, 2), dtype=torch.bool), _lesion((1, 1, 1))) == 0.0


def test_lesion_coverage_of_an_empty_lesion_is_nan():
    assert math.isnan(lesion_coverage(torch.ones((2, 2, 2), dtype=torch.bool), np.zeros((12, 12, 6), bool)))


def test_lesion_coverage_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"\[D1, D2, H\]"):
        lesion_coverage(torch.ones((2, 2), dtype=torch.bool), _lesion((0, 0, 0)))
    with pytest.raises(ValueError, match="triplets"):
        lesion_coverage(torch.ones((2, 2, 3), dtype=torch.bool), _lesion((0, 0, 0)))  # 6 slices, 3 triplets need 9


def test_allowed_fraction_is_the_share_of_allowed_cells():
    region = np.zeros((2, 2, 2), bool)
    region[0, :, :] = True
    assert allowed_fraction(region) == pytest.approx(0.5)


def test_nearest_downsampling_that_drops_an_organ_logs_a_warning_once(caplog):
    allowed_module._LOST_WARNED.clear()
    organs = np.zeros((8, 8, 6), np.uint8)
    organs[0:2, 0:2, :] = 1  # a small right lung in a corner: the 2 x 2 grid samples the cell centres (2, 2), (6, 6)
    organs[3:5, 3:5, :] = 2  # heart between the sample points as well
    with caplog.at_level(logging.WARNING, logger="hirescam_ext.regions.allowed"):
        masks = organ_masks_on_grid(organs, (2, 2, 2), mode="nearest")
        organ_masks_on_grid(organs, (2, 2, 2), mode="nearest")
    assert not masks[0].any()
    lost = [r for r in caplog.records if "has no cell" in r.getMessage()]
    assert len(lost) == 2  # right lung and heart, each once although called twice
    assert "right lung" in lost[0].getMessage() and "mode 'nearest'" in lost[0].getMessage()
    assert "heart/mediastinum" in lost[1].getMessage()


def test_area_downsampling_that_drops_an_organ_advises_a_lower_threshold(caplog):
    allowed_module._LOST_WARNED.clear()
    organs = np.zeros((8, 8, 6), np.uint8)
    organs[0, 0, :] = 3  # a sliver: 1/16 of its cell
    with caplog.at_level(logging.WARNING, logger="hirescam_ext.regions.allowed"):
        organ_masks_on_grid(organs, (2, 2, 2), mode="area", area_threshold=0.1)
    msg = [r.getMessage() for r in caplog.records if "has no cell" in r.getMessage()]
    assert len(msg) == 1 and "left lung" in msg[0] and "below 0.1" in msg[0]


def test_area_downsampling_keeping_every_organ_logs_nothing(caplog):
    allowed_module._LOST_WARNED.clear()
    organs = np.zeros((8, 8, 6), np.uint8)
    organs[0:2, 0:2, :] = 1  # a quarter of its cell
    organs[3:5, 2:6, :] = 2  # an eighth of each of four cells
    with caplog.at_level(logging.WARNING, logger="hirescam_ext.regions.allowed"):
        masks = organ_masks_on_grid(organs, (2, 2, 2), mode="area", area_threshold=0.1)
    assert masks[0].any() and masks[1].any()
    assert not [r for r in caplog.records if "has no cell" in r.getMessage()]


def test_eval_script_parses_its_settings_and_rejects_unknown_ones(load_script):
    script = load_script("eval_allowed_regions")
    assert script.parse_setting("nearest") == {"mode": "nearest", "dilation": 0}
    assert script.parse_setting("area0.1+2") == {"mode": "area", "area_threshold": 0.1, "dilation": 2}
    with pytest.raises(ValueError, match="unknown setting"):
        script.parse_setting("trilinear")


def test_eval_script_dilation_never_lowers_lesion_coverage(load_script):
    out = load_script("eval_allowed_regions").evaluate(3, 0, [(6, 6)], ["nearest", "nearest+1"])
    assert out["findings"] > 0
    for source in ("truth", "ours"):
        res = out["results"][source]["6x6"]
        assert res["nearest+1"]["coverage_all"]["mean"] >= res["nearest"]["coverage_all"]["mean"]
        assert res["nearest+1"]["allowed"]["mean"] > res["nearest"]["allowed"]["mean"]


def test_eval_script_resamples_scans_rendered_finer_with_their_organ_maps_and_lesions(load_script):
    """Rendered on demo's grid and resampled to tiny's (as train_reference --render-profile prepares them), the
    truth G_true still holds most lesion cells."""
    out = load_script("eval_allowed_regions").evaluate(3, 0, [(4, 4)], ["area0.1"], profile="tiny",
                                                       render_profile="demo")
    assert out["render_profile"] == "demo" and out["shape"] == [64, 64, 48] and out["findings"] > 0
    assert out["results"]["truth"]["4x4"]["area0.1"]["coverage_all"]["mean"] > 0.5


def test_eval_script_plans_the_cases_of_both_grids_on_one_benchmark_size(load_script):
    out = load_script("eval_allowed_regions").evaluate(2, 0, [(4, 4)], ["area0.1"], profile="tiny",
                                                       render_profile="demo", n_scans=6000)
    assert out["scans"] == 6000 and out["render_profile"] == "demo"


def test_eval_script_rendering_on_the_profile_itself_is_no_resampling(load_script):
    script = load_script("eval_allowed_regions")
    plain = script.evaluate(2, 0, [(4, 4)], ["area0.1"], profile="tiny")
    same = script.evaluate(2, 0, [(4, 4)], ["area0.1"], profile="tiny", render_profile="tiny")
    assert same["results"] == plain["results"] and same["findings"] == plain["findings"]
