"""Specification of ``segment_organs`` on analytic phantoms: sides, touching lungs, failure flags, orientation."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy import ndimage as ndi

from hirescam_ext.segmentation import HEART_MEDIASTINUM, LEFT_LUNG, RIGHT_LUNG, OrganSegmentation, segment_organs
from hirescam_ext.utils.errors import InputError

SPACING = (5.0, 5.0, 5.0)


def _dice(a, b):
    return 2.0 * float((a & b).sum()) / max(1, int(a.sum()) + int(b.sum()))


def test_phantom_lungs_match_truth_and_heart_lies_between(chest):
    hu, truth = chest()
    seg = segment_organs(hu, spacing=SPACING)
    assert isinstance(seg, OrganSegmentation) and seg.organs.dtype == np.uint8
    assert seg.ok, seg.reasons
    assert _dice(seg.organs == RIGHT_LUNG, truth == 1) >= 0.95
    assert _dice(seg.organs == LEFT_LUNG, truth == 3) >= 0.95
    heart = seg.organs == HEART_MEDIASTINUM
    assert heart.any()
    xs = np.nonzero(heart[:, 32, 25])[0]
    # central row: between the medial edges of the lungs (left lung ends at x=36, right lung starts at x=43)
    assert xs.size >= 4 and 36 <= xs.min() and xs.max() <= 43
    assert not heart[:, :, :7].any() and not heart[:, :, 44:].any()  # only within the lungs' extent


def test_right_lung_is_the_one_with_larger_ras_axis0_and_mirroring_swaps_labels(chest):
    hu, truth = chest()
    seg = segment_organs(hu, spacing=SPACING).organs
    assert np.nonzero(seg == RIGHT_LUNG)[0].mean() > np.nonzero(seg == LEFT_LUNG)[0].mean()
    mirrored = segment_organs(hu[::-1].copy(), spacing=SPACING).organs[::-1]
    assert _dice(mirrored == LEFT_LUNG, seg == RIGHT_LUNG) >= 0.95
    assert _dice(mirrored == RIGHT_LUNG, seg == LEFT_LUNG) >= 0.95


def test_affine_with_lps_axis_order_gives_the_same_anatomy(chest):
    hu, _ = chest()
    ras = segment_organs(hu, spacing=SPACING).organs
    lps_hu = hu[::-1, ::-1].copy()  # voxel order L, P, S
    affine = np.diag([-5.0, -5.0, 5.0, 1.0])
    lps = segment_organs(lps_hu, affine=affine).organs
    np.testing.assert_array_equal(lps[::-1, ::-1], ras)


def test_touching_lungs_are_separated_at_the_junction_not_lost(chest, ellipsoid):
    shape = (80, 64, 50)
    right = ellipsoid(shape, (54, 32, 25), (11, 15, 18))
    left = ellipsoid(shape, (26, 32, 25), (10, 14, 17))
    while not (ndi.binary_dilation(right) & left).any():  # grow until they touch
        right = ndi.binary_dilation(right) & ~left
        left = ndi.binary_dilation(left) & ~right
    assert ndi.label(right | left)[1] == 1
    hu, truth = chest(lungs=(right, left))
    seg = segment_organs(hu, spacing=SPACING)
    assert seg.split == "erosion"
    assert _dice(seg.organs == RIGHT_LUNG, right) >= 0.9
    assert _dice(seg.organs == LEFT_LUNG, left) >= 0.9


def test_one_lung_volume_is_flagged_with_reason_and_keeps_a_heart_region(chest, caplog):
    hu, truth = chest()
    hu[truth == 3] = 40.0  # left pneumonectomy: the left hemithorax is soft tissue
    with caplog.at_level(logging.WARNING, logger="hirescam_ext.segmentation"):
        seg = segment_organs(hu, spacing=SPACING)
    assert not seg.ok
    assert any("one lung" in r for r in seg.reasons)
    assert seg.fallback is not None and "mirror" in seg.fallback
    assert (seg.organs == HEART_MEDIASTINUM).any()
    assert (seg.organs == RIGHT_LUNG).any() and not (seg.organs == LEFT_LUNG).any()
    assert "one lung" in caplog.text and "fallback" in caplog.text


def test_all_air_volume_is_flagged_not_ct():
    seg = segment_organs(np.full((40, 40, 20), -1000.0), spacing=SPACING)
    assert not seg.ok and seg.fallback == "empty"
    assert seg.reasons and not seg.organs.any()


def test_mr_like_intensities_are_flagged_as_not_hounsfield():
    rng = np.random.default_rng(0)
    seg = segment_organs(rng.uniform(0, 1000, (40, 40, 20)).astype(np.float32), spacing=SPACING)
    assert not seg.ok
    assert "Hounsfield" in seg.reasons[0]
    assert not seg.organs.any()


def test_extreme_lung_volume_ratio_is_flagged(chest):
    hu, _ = chest(left_radii=(4, 6, 8))
    seg = segment_organs(hu, spacing=SPACING)
    assert not seg.ok
    assert any("ratio" in r for r in seg.reasons)


@pytest.mark.parametrize("bad", [np.zeros((10, 10)), np.full((4, 4, 4), np.nan), np.zeros((2, 4, 4, 4))])
def test_non_volume_input_raises_input_error(bad):
    with pytest.raises(InputError):
        segment_organs(bad, spacing=SPACING)


def test_fine_scan_uses_working_grid_and_matches_coarse_result(chest):
    hu, truth = chest(shape=(80, 64, 50))
    fine = np.repeat(np.repeat(np.repeat(hu, 2, 0), 2, 1), 2, 2)
    seg = segment_organs(fine, spacing=(2.5, 2.5, 2.5), working_spacing=5.0)
    fine_truth = np.repeat(np.repeat(np.repeat(truth, 2, 0), 2, 1), 2, 2)
    assert seg.organs.shape == fine.shape
    assert _dice(seg.organs == RIGHT_LUNG, fine_truth == 1) >= 0.95
    assert _dice(seg.organs == LEFT_LUNG, fine_truth == 3) >= 0.95


def test_off_centre_patient_keeps_sides_although_both_lungs_lie_right_of_the_array_midline(chest):
    hu, truth = chest()
    pad = ((60, 0), (0, 0), (0, 0))  # both lungs now sit at axis-0 indices above the array's midline (70)
    hu2 = np.pad(hu, pad, constant_values=-1000.0)
    truth2 = np.pad(truth, pad)
    assert np.nonzero(truth2 == 3)[0].min() > hu2.shape[0] // 2
    seg = segment_organs(hu2, spacing=SPACING)
    assert seg.ok, seg.reasons
    assert _dice(seg.organs == RIGHT_LUNG, truth2 == 1) >= 0.95
    assert _dice(seg.organs == LEFT_LUNG, truth2 == 3) >= 0.95


@pytest.mark.parametrize("kept_mm, flagged", [(60, True), (150, False)])
def test_lungs_entering_at_the_top_slice_over_a_short_span_are_flagged_lung_bases_only(chest, kept_mm, flagged):
    hu, truth = chest()
    z_low = int(np.flatnonzero((truth > 0).any(axis=(0, 1)))[0])
    top = z_low + kept_mm // 5  # the field of view ends kept_mm above the lung bases
    seg = segment_organs(hu[:, :, :top], spacing=SPACING)
    assert any(r.startswith("lung bases only") for r in seg.reasons) == flagged
    assert seg.ok != flagged


def test_whole_chest_is_not_flagged_as_a_partial_field_of_view(chest):
    hu, _ = chest()
    seg = segment_organs(hu, spacing=SPACING)
    assert seg.partial_field_of_view is False and seg.quality()["partial_field_of_view"] is False


def test_lungs_cut_by_the_volume_border_set_the_partial_field_of_view_flag(chest):
    hu, _ = chest()
    cut = hu[:, :, 20:]  # the top slice now runs through both lungs
    seg = segment_organs(cut, spacing=SPACING)
    assert seg.partial_field_of_view is True and seg.quality()["partial_field_of_view"] is True
