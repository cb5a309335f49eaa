"""Specification of ``segment_lungs`` rules: lung parenchyma cut off from its lung joins it, gas and shells do not."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from hirescam_ext.synthetic.generator import generate_case
from hirescam_ext.segmentation import LEFT_LUNG, segment_organs
from hirescam_ext.segmentation.lungs import segment_lungs

SPACING = (5.0, 5.0, 5.0)
# a 12 mL block (4 x 4 x 6 voxels of 5 mm) low and lateral in the left hemithorax, apart from the left lung
PIECE = (slice(13, 17), slice(20, 24), slice(9, 15))


def _chest_with_piece(chest, piece_hu):
    hu, truth = chest()
    block = np.zeros(hu.shape, bool)
    block[PIECE] = True
    assert not (ndi.binary_dilation(block, iterations=2) & (truth > 0)).any()  # really cut off from both lungs
    hu[block] = piece_hu(block.sum())
    return hu, block


def test_lung_density_piece_cut_off_from_the_left_lung_joins_the_left_lung(chest):
    rng = np.random.default_rng(1)
    hu, block = _chest_with_piece(chest, lambda n: -840.0 + rng.normal(0.0, 20.0, n))
    res = segment_lungs(hu, SPACING)
    assert res.left[block].all() and not res.right[block].any()
    assert any("lung pieces" in note and "mL left" in note for note in res.notes)


def test_pure_gas_cut_off_from_the_lungs_is_not_lung(chest):
    rng = np.random.default_rng(2)
    hu, block = _chest_with_piece(chest, lambda n: -1000.0 + rng.normal(0.0, 10.0, n))
    res = segment_lungs(hu, SPACING)
    assert not (res.left | res.right)[block].any()


def test_air_of_mixed_density_is_not_taken_for_a_lung_piece(chest):
    rng = np.random.default_rng(3)
    # partial-volume shells and bowel contents spread over the whole air range: no uniform parenchyma
    hu, block = _chest_with_piece(chest, lambda n: rng.uniform(-940.0, -450.0, n))
    res = segment_lungs(hu, SPACING)
    assert not (res.left | res.right)[block].any()


def test_piece_goes_to_the_lung_on_its_side_of_the_midline_between_the_lungs_not_of_the_body(chest, ellipsoid):
    shape = (80, 64, 50)
    right = ellipsoid(shape, (62, 32, 25), (7, 13, 17))  # mediastinum shifted right: the lungs' midline is x = 47
    left = ellipsoid(shape, (30, 32, 25), (10, 14, 17))  # the left lung reaches the body centre (x = 40)
    hu, truth = chest(lungs=(right, left))
    block = np.zeros(shape, bool)
    block[42:45, 30:34, 18:26] = True  # 12 mL right of the body centre, left of the lungs' midline
    assert not (ndi.binary_dilation(block) & (truth > 0)).any()
    hu[block] = -840.0
    res = segment_lungs(hu, SPACING)
    assert res.left[block].all() and not res.right[block].any()


def test_gassy_emphysematous_lungs_are_not_passed_over_for_a_small_abdominal_blob(chest):
    rng = np.random.default_rng(4)
    hu, truth = chest()
    lungs = truth > 0
    hu[lungs] = -985.0 + rng.normal(0.0, 10.0, int(lungs.sum()))  # a quarter and more under -970 HU
    z_low = int(np.flatnonzero(lungs.any(axis=(0, 1)))[0])
    blob = np.zeros(hu.shape, bool)
    blob[30:36, 20:26, 0 : z_low - 2] = True  # 13 mL of uniform lung-density air under the lungs
    hu[blob] = -840.0
    res = segment_lungs(hu, SPACING)
    assert res.split == "components"
    dice = lambda a, b: 2.0 * float((a & b).sum()) / (a.sum() + b.sum())  # noqa: E731
    assert dice(res.right, truth == 1) >= 0.9 and dice(res.left, truth == 3) >= 0.9
    assert not (res.right | res.left)[blob].any()


def test_lung_bases_outranked_by_colon_gas_are_still_the_lungs(chest):
    hu, truth = chest(right_radii=(5, 7, 8), left_radii=(5, 7, 8))
    gas = np.zeros(hu.shape, bool)
    gas[24:56, 46:53, 0:7] = True  # 196 mL of pure gas in front of and below the lungs, larger than either lung
    assert gas.sum() > max((truth == 1).sum(), (truth == 3).sum())
    hu[gas] = -1000.0
    res = segment_lungs(hu, SPACING)
    assert res.split == "components" and not (res.right | res.left)[gas].any()
    assert any("passed over" in note for note in res.notes)


def test_lung_density_piece_below_the_lowest_lung_base_is_not_lung(chest):
    hu, truth = chest()
    z_low = int(np.flatnonzero((truth > 0).any(axis=(0, 1)))[0])
    block = np.zeros(hu.shape, bool)
    block[13:17, 20:24, z_low - 6 : z_low - 1] = True  # under the thoracic cavity: abdomen
    hu[block] = -840.0
    res = segment_lungs(hu, SPACING)
    assert not (res.left | res.right)[block].any()


@pytest.mark.slow
def test_left_recess_cut_off_by_an_enlarged_heart_is_left_lung_and_keeps_the_heart_region():
    """Synthetic case 9: cardiomegaly fills the left hemithorax for 35 mm; under it the left lung's posterior
    recess (against the gastric fundus gas) is the left lung's base. The left main part still ends on the heart,
    so no diaphragm floor is fitted to it (it would cut the heart off)."""
    case = generate_case(9, 0)
    seg = segment_organs(case.image, affine=case.affine)
    truth_left, left = case.organs == LEFT_LUNG, seg.organs == LEFT_LUNG
    lowest = [int(np.flatnonzero(m.any(axis=(0, 1)))[0]) for m in (truth_left, left)]
    assert lowest[1] == lowest[0]
    dice = lambda a, b: 2.0 * float((a & b).sum()) / (a.sum() + b.sum())  # noqa: E731
    assert dice(left, truth_left) >= 0.98
    assert dice(seg.organs == 2, case.organs == 2) >= 0.95
