"""Specification of the anatomical phantom (hirescam_ext.synthetic.phantom): RAS layout, organ map, HU plausibility."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from hirescam_ext.synthetic.phantom import HU, build_phantom, make_grid, sample_anatomy

SHAPE, SPACING = (64, 64, 48), (5.8, 5.8, 6.4)


def _phantom(seed: int = 0, **kw):
    grid = make_grid(SHAPE, SPACING)
    rng = np.random.default_rng(seed)
    return build_phantom(grid, sample_anatomy(rng, grid, **kw), rng)


@pytest.fixture(scope="module")
def phantoms():
    return [_phantom(s) for s in range(4)]


def test_organ_map_holds_both_lungs_and_mediastinum(phantoms):
    for ph in phantoms:
        assert set(np.unique(ph.organs).tolist()) == {0, 1, 2, 3}


def test_right_lung_has_larger_axis0_indices_than_left(phantoms):
    for ph in phantoms:
        right_x = np.argwhere(ph.organs == 1)[:, 0].mean()
        left_x = np.argwhere(ph.organs == 3)[:, 0].mean()
        assert right_x > left_x


def test_lung_parenchyma_is_air_dense(phantoms):
    for ph in phantoms:
        lungs = (ph.organs == 1) | (ph.organs == 3)
        assert ph.hu[lungs].mean() < -700


def test_heart_mediastinum_lies_between_the_lungs(phantoms):
    for ph in phantoms:
        med_x = np.argwhere(ph.organs == 2)[:, 0].mean()
        assert np.argwhere(ph.organs == 3)[:, 0].mean() < med_x < np.argwhere(ph.organs == 1)[:, 0].mean()
        assert 0 < ph.hu[ph.organs == 2].mean() + 100  # soft tissue and fat, not air


def test_volume_corners_are_air_and_body_contains_bone(phantoms):
    for ph in phantoms:
        assert ph.hu[0, -1, 0] == HU["air"]
        assert (ph.hu > 300).sum() > 50


def test_table_lies_posterior_to_the_body(phantoms):
    for ph in phantoms:
        an = ph.anatomy.params
        body_back = an["body_cy"] - an["body_b"]
        ys = ph.grid.y
        table_rows = ys < body_back - 1.0
        assert (ph.hu[:, table_rows, :] > 100).any(), "table shell expected under the back"


def test_thicker_fat_gives_more_fat_voxels():
    thin = _phantom(5, fat_mm=5.0)
    thick = _phantom(5, fat_mm=38.0)

    def fat(ph):
        return int(((ph.hu > -130) & (ph.hu < -60) & (ph.organs == 0)).sum())

    assert fat(thick) > 1.5 * fat(thin)


def test_cardiomegaly_enlarges_the_heart_region():
    normal = _phantom(7, heart_scale=1.0)
    big = _phantom(7, heart_scale=1.3)
    assert (big.organs == 2).sum() > 1.2 * (normal.organs == 2).sum()


def test_trachea_above_the_lungs_is_not_lung(phantoms):
    for ph in phantoms:
        an = ph.anatomy.params
        idx = ph.grid.index_of(np.array([*an["trachea"]["xy"], an["z_carina"] + 10.0]))
        assert ph.hu[idx] < -900  # air lumen
        assert ph.organs[idx] not in (1, 3)


def test_grid_affine_is_ras_with_the_spacing():
    grid = make_grid(SHAPE, SPACING)
    assert nib.aff2axcodes(grid.affine) == ("R", "A", "S")
    assert np.allclose(np.diag(grid.affine)[:3], SPACING)
    assert np.allclose(grid.affine[:3, :3] @ np.zeros(3) + grid.affine[:3, 3], [grid.x[0], grid.y[0], grid.z[0]])


def test_make_grid_rejects_bad_shape():
    with pytest.raises(ValueError):
        make_grid((4, 64, 48), SPACING)


def test_upper_abdomen_below_the_diaphragm_is_background(phantoms):
    for ph in phantoms:
        an = ph.anatomy.params
        idx = ph.grid.index_of(np.array([an["mx"], an["cavity"]["cy"], an["z_rec"] + 3.0]))
        assert ph.organs[idx] == 0
        assert ph.hu[idx] > 0  # liver / soft tissue, not lung


def test_lungs_can_meet_at_the_anterior_midline():
    touching = 0
    for seed in range(12):
        ph = _phantom(seed)
        right = ph.organs == 1
        left = ph.organs == 3
        touching += bool((right[1:] & left[:-1]).any())  # a right-lung voxel right next to a left-lung voxel
    assert touching >= 1


def test_heart_mediastinum_stays_within_each_slices_lung_extent(phantoms):
    # the truth is the tissue between the lungs: nothing in front of or behind the lungs of that slice
    for ph in phantoms:
        lungs = (ph.organs == 1) | (ph.organs == 3)
        for z in np.flatnonzero((ph.organs == 2).any(axis=(0, 1))):
            rows = np.flatnonzero(lungs[:, :, z].any(axis=0))
            med_rows = np.flatnonzero((ph.organs[:, :, z] == 2).any(axis=0))
            assert rows.size and rows[0] <= med_rows[0] and med_rows[-1] <= rows[-1], z

