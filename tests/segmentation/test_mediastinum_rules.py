"""Unit rules of the heart/mediastinum region: heart under the lung-base floor, spine outline, apex envelope."""

from __future__ import annotations

import numpy as np
import pytest

from hirescam_ext.segmentation.mediastinum import find_spine, heart_below_floor, mediastinum_region

SPACING = (3.0, 3.0, 3.0)


def _floor_case(fat_z: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One column of heart tissue above a floor at z=10; a fat voxel at ``fat_z`` under it (or none)."""
    hu = np.full((5, 5, 20), 40.0, np.float32)
    if fat_z is not None:
        hu[:, :, fat_z] = -95.0
    below = np.zeros(hu.shape, bool)
    below[:, :, :10] = True
    region = ~below
    return hu, region, below


def test_heart_below_floor_extends_down_to_the_fat_lining_its_inferior_wall():
    hu, region, below = _floor_case(fat_z=6)
    ext = heart_below_floor(hu, region, below, SPACING)
    assert ext[2, 2, 6:10].all()  # the fat voxel and the myocardium above it
    assert not ext[2, 2, :6].any()  # nothing under the fat
    assert not (ext & ~below).any()


def test_heart_below_floor_adds_nothing_without_fat_within_the_depth():
    hu, region, below = _floor_case(fat_z=None)  # liver-like tissue straight under the floor
    assert not heart_below_floor(hu, region, below, SPACING).any()
    hu, region, below = _floor_case(fat_z=0)  # fat 30 mm under the floor, deeper than depth_mm=20
    assert not heart_below_floor(hu, region, below, SPACING, depth_mm=20.0).any()


def test_heart_below_floor_needs_region_tissue_right_above_the_floor():
    hu, region, below = _floor_case(fat_z=6)
    region[:, :, 10] = False  # the column above the floor is not heart region here
    assert not heart_below_floor(hu, region, below, SPACING).any()


def test_heart_below_floor_does_not_take_air_under_the_floor_for_the_fat_lining():
    # gastric fundus (or bowel) gas at z=5..6 under the floor at z=10, soft tissue in between: no fat lining
    hu, region, below = _floor_case(fat_z=None)
    hu[:, :, 5:7] = -1000.0
    assert not heart_below_floor(hu, region, below, SPACING).any()
    # real fat at z=8 above the air: the heart reaches down to the fat, not to the air
    hu[:, :, 8] = -95.0
    ext = heart_below_floor(hu, region, below, SPACING)
    assert ext[2, 2, 8:10].all()
    assert not ext[2, 2, :8].any()


def test_heart_below_floor_fat_band_bounds_are_settable():
    hu, region, below = _floor_case(fat_z=6)
    hu[:, :, 6] = -250.0  # below the default -190 HU lower bound: not fat
    assert not heart_below_floor(hu, region, below, SPACING).any()
    assert heart_below_floor(hu, region, below, SPACING, fat_min_hu=-300.0)[2, 2, 6:10].all()


def test_heart_below_floor_continues_mediastinal_fat_down_its_fat_run():
    # mediastinal fat above the floor at z=10 and under it down to z=7; diaphragm muscle (soft tissue) at z=6
    hu, region, below = _floor_case(fat_z=None)
    hu[:, :, 7:12] = -95.0
    ext = heart_below_floor(hu, region, below, SPACING)
    assert ext[2, 2, 7:10].all()
    assert not ext[2, 2, :7].any()  # the run stops at the first voxel that is not fat


def test_heart_below_floor_fat_run_stops_at_air_and_at_the_depth():
    hu, region, below = _floor_case(fat_z=None)
    hu[:, :, :12] = -95.0
    hu[:, :, 8] = -1000.0  # gas under the floor ends the run
    ext = heart_below_floor(hu, region, below, SPACING)
    assert ext[2, 2, 9] and not ext[2, 2, :9].any()
    hu[:, :, 8] = -95.0  # fat all the way down: only depth_mm (9 mm = 3 slices) under the floor
    ext = heart_below_floor(hu, region, below, SPACING, depth_mm=9.0)
    assert ext[2, 2, 7:10].all() and not ext[2, 2, :7].any()


def test_heart_below_floor_fat_run_needs_region_fat_right_above_the_floor():
    hu, region, below = _floor_case(fat_z=None)
    hu[:, :, 7:11] = -95.0  # a fat run across the floor at z=10
    assert heart_below_floor(hu, region, below, SPACING)[2, 2, 7:10].all()
    region[:, :, 10] = False  # the same fat above the floor, but outside the region (lateral or subcutaneous)
    assert not heart_below_floor(hu, region, below, SPACING).any()


def test_heart_below_floor_handles_a_volume_without_slices():
    hu = np.zeros((4, 4, 0), np.float32)
    ext = heart_below_floor(hu, np.zeros(hu.shape, bool), np.zeros(hu.shape, bool), SPACING)
    assert ext.shape == hu.shape and not ext.any()


def _spine_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A vertebral body (x 20..30) with its neural arch behind the lungs, the lungs on both sides."""
    shape = (51, 40, 30)
    hu = np.full(shape, 40.0, np.float32)
    hu[20:31, 10:20, :] = 250.0  # cancellous body
    hu[20:31, 19, :] = 700.0  # anterior cortex
    hu[20:31, 8:10, :] = 700.0  # neural arch (pedicles and laminae), behind the lungs' most posterior row
    hu[24:27, 2:8, :] = 700.0  # spinous process
    lungs = np.zeros(shape, bool)
    lungs[2:15, 6:35, :] = True
    lungs[36:49, 6:35, :] = True
    body = np.ones(shape, bool)
    return hu, lungs, body


def test_spine_grows_through_the_whole_vertebral_body_to_its_front():
    hu, lungs, body = _spine_case()
    spine = find_spine(hu, lungs, body, SPACING)
    assert spine[20:31, 10:20, 15].all()  # body and anterior cortex, both sides
    assert not spine[20:31, 20:, 15].any()  # nothing in front of it


def test_contrast_filled_aorta_against_one_side_of_the_spine_is_not_taken_as_bone():
    hu, lungs, body = _spine_case()
    hu[18:24, 20:28, :] = 250.0  # enhanced descending aorta (250 HU) against the front of the body's left edge
    spine = find_spine(hu, lungs, body, SPACING)
    assert spine[20:31, 10:20, 15].all()
    assert not spine[:, 20:, 15].any()  # the mirror image of the aorta's columns (x 27..30) stops at the cortex


def test_spine_keeps_the_whole_body_when_the_arch_is_one_voxel_off_centre():
    hu, lungs, body = _spine_case()
    hu[24:27, 2:8, :] = 40.0
    hu[25:28, 2:8, :] = 700.0  # spinous process one voxel to the right (a rotated vertebra)
    hu[31, 8:10, :] = 700.0  # and the arch reaching one voxel further right
    spine = find_spine(hu, lungs, body, SPACING)
    assert spine[20:31, 10:20, 15].all()  # the whole body, both edge columns included


def test_spine_front_recess_along_z_is_bridged_by_the_z_closing():
    hu, lungs, body = _spine_case()
    hu[20:31, 16:20, 10:20] = 40.0  # 30 mm of the bodies' front not seen as bone
    assert find_spine(hu, lungs, body, SPACING)[25, 18, 15]
    assert not find_spine(hu, lungs, body, SPACING, close_z_mm=6.0)[25, 18, 15]


def test_apex_slices_are_not_narrowed_by_the_central_slice_envelope():
    shape = (41, 30, 40)
    right = np.zeros(shape, bool)
    left = np.zeros(shape, bool)
    right[24:34, 5:25, 2:38] = True
    left[6:16, 5:25, 2:38] = True
    # above the central band (top 15 % of the lung height) the medial edges move apart
    right[24:27, 5:25, 34:38] = False
    left[13:16, 5:25, 34:38] = False
    hu = np.zeros(shape, np.float32)
    region = mediastinum_region(hu, right, left, np.ones(shape, bool), SPACING)
    assert region[14:26, 15, 36].all()  # the apex slice keeps the full width between its lungs
    assert region[16:24, 15, 20].all() and not region[14, 15, 20]  # central slice: between its lungs only


def test_medial_edges_of_rows_without_lung_are_interpolated_within_the_slice():
    from hirescam_ext.segmentation.mediastinum import _fill_medial_edges

    edge = np.zeros((5, 3))
    has = np.zeros((5, 3), bool)
    edge[0, 1], edge[4, 1] = 10.0, 20.0  # slice 1: lung in rows 0 and 4 only
    has[[0, 4], 1] = True
    edge[2, 2] = 7.0  # slice 2: lung in row 2 only
    has[2, 2] = True
    out = _fill_medial_edges(edge, has)
    assert out[:, 1].tolist() == [10.0, 12.5, 15.0, 17.5, 20.0]  # linear between the rows of the slice
    assert out[:, 2].tolist() == [7.0] * 5  # held beyond the only row
    assert out[:, 0].tolist() == out[:, 1].tolist()  # slice 0 has no lung: copies the nearest slice (1)


def _column_case(fat_z: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Region z 2..19 of soft tissue (heart above, abdomen below) with a fat lining at ``fat_z`` (or none)."""
    hu = np.full((4, 4, 20), 40.0, np.float32)
    if fat_z is not None:
        hu[:, :, fat_z] = -95.0
    region = np.zeros(hu.shape, bool)
    region[:, :, 2:] = True
    return hu, region


def test_under_lowest_fat_returns_the_tissue_under_a_fat_lining_near_the_region_bottom():
    from hirescam_ext.segmentation.mediastinum import under_lowest_fat

    hu, region = _column_case(fat_z=5)  # 9 mm above the region's bottom (z=2)
    cut = under_lowest_fat(hu, region, SPACING, depth_mm=25.0)
    assert cut[1, 1, 2:5].all() and not cut[1, 1, 5:].any() and not cut[1, 1, :2].any()


def test_under_lowest_fat_keeps_columns_whose_fat_is_high_or_missing():
    from hirescam_ext.segmentation.mediastinum import under_lowest_fat

    hu, region = _column_case(fat_z=15)  # 39 mm above the bottom: the heart may fill the column under it
    assert not under_lowest_fat(hu, region, SPACING, depth_mm=25.0).any()
    hu, region = _column_case(fat_z=None)
    assert not under_lowest_fat(hu, region, SPACING).any()


def test_diaphragm_floor_says_why_it_is_missing():
    from hirescam_ext.segmentation.mediastinum import _below_diaphragm

    right = np.zeros((30, 20, 30), bool)
    left = np.zeros_like(right)
    right[20:28, 4:16, 5:25] = True
    left[2:10, 4:16, 20:25] = True  # left base 45 mm above the right one
    below, status = _below_diaphragm(right, left, SPACING)
    assert status == "uneven" and not below.any()
    left[2:10, 4:16, 0:25] = True  # a lung cut by the bottom slice
    assert _below_diaphragm(right, left, SPACING)[1] == "partial"
    left[:] = False
    left[2:10, 4:16, 5:25] = True
    below, status = _below_diaphragm(right, left, SPACING)
    # the bases lie at z=5; the floor 2 mm (0.67 slice) under them: slices 0..4 are below it
    assert status == "fitted" and below[:, :, 4].all() and not below[:, :, 5].any()
    left[:] = False
    left[2:4, 4:6, 5:25] = True  # a lung base of 4 columns: too few for the fit
    assert _below_diaphragm(right, left, SPACING)[1] == "unfit"
    empty = np.zeros((4, 4, 0), bool)
    assert _below_diaphragm(empty, empty, SPACING)[1] == "unfit"


def test_diaphragm_floor_judges_the_bases_by_each_lungs_main_part():
    from hirescam_ext.segmentation.mediastinum import _below_diaphragm

    right = np.zeros((30, 20, 30), bool)
    left = np.zeros_like(right)
    right[20:28, 4:16, 5:25] = True
    left[2:10, 4:16, 20:25] = True  # the left lung's main part ends 45 mm above the right base (on the heart)...
    left[2:4, 4:6, 5:8] = True  # ...and a recess tip cut off from it reaches the right base's level
    assert _below_diaphragm(right, left, SPACING)[1] == "uneven"


def test_under_lowest_fat_ignores_fat_band_voxels_next_to_air():
    from hirescam_ext.segmentation.mediastinum import under_lowest_fat

    hu, region = _column_case(fat_z=None)
    hu[:, :, 5] = -100.0  # partial volume at the edge of the gas below, not a fat lining
    hu[:, :, 4] = -1000.0
    assert not under_lowest_fat(hu, region, SPACING, depth_mm=25.0).any()
    assert not under_lowest_fat(np.zeros((4, 4, 0), np.float32), np.zeros((4, 4, 0), bool), SPACING).any()


@pytest.mark.parametrize("status, applied", [("uneven", True), ("partial", False), ("unfit", False)])
def test_under_lowest_fat_runs_only_when_the_lung_bases_are_uneven(monkeypatch, status, applied):
    import hirescam_ext.segmentation.mediastinum as med

    calls = []
    monkeypatch.setattr(med, "_below_diaphragm", lambda r, l, s: (np.zeros(r.shape, bool), status))
    monkeypatch.setattr(med, "under_lowest_fat", lambda hu, region, sp: calls.append(1) or np.zeros_like(region))
    right = np.zeros((30, 20, 5), bool)
    left = right.copy()
    right[20:28, 4:16] = True
    left[2:10, 4:16] = True
    med.mediastinum_region(np.zeros(right.shape, np.float32), right, left, np.ones_like(right), (4, 4, 4))
    assert bool(calls) == applied
