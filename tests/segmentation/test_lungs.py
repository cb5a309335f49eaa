"""Specification of ``segment_lungs`` rules: lung parenchyma cut off from its lung joins it, gas and shells do not."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from hirescam_ext.data.synthetic import generate_case
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
    assert any("lung pieces" in note and "12.0 mL left" in note for note in res.notes)


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
