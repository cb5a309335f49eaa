"""RandFlipRot90d: one draw applied identically to image, organ map and allowed-region grid; invertible."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from monai.data import MetaTensor

from hirescam_ext.transforms.augmentation import RandFlipRot90d

CELL = 3  # voxels per grid cell along every axis
GRID = (4, 4, 3)  # D1, D2, H
MARK = (1, 0, 2)  # marker cell (d1, d2, h)


def _sample():
    """Image [1,12,12,9] and organ map with a marker block filling one grid cell; regions [2,4,4,3] marking it."""
    shape = tuple(g * CELL for g in GRID)
    image = torch.zeros((1, *shape))
    block = tuple(slice(m * CELL, (m + 1) * CELL) for m in MARK)
    image[(0, *block)] = 1.0
    image[0, 0, 0, 0] = 0.5  # an asymmetric corner voxel too
    organs = (image > 0.9).to(torch.uint8) * 2
    regions = torch.zeros((2, *GRID))
    regions[(1, *MARK)] = 1.0
    affine = torch.diag(torch.tensor([0.8, 0.8, 0.8, 1.0], dtype=torch.float64))
    return {"image": MetaTensor(image, affine=affine), "organs": MetaTensor(organs, affine=affine), "regions": regions}


def _cell_max(x):
    return F.max_pool3d(x.float()[None], kernel_size=CELL)[0]


@pytest.mark.parametrize("flip_axis,k", list(itertools.product([None, 0, 1, 2], [0, 1, 2, 3])))
def test_image_organs_and_regions_stay_aligned(flip_axis, k):
    aug = RandFlipRot90d(("image", "organs", "regions"))
    aug.set_draw(flip_axis, k)
    out = aug(_sample(), randomize=False)
    image_cells = _cell_max(out["image"][0:1] > 0.9)[0]
    organ_cells = _cell_max(out["organs"] == 2)[0]
    region_cells = out["regions"][1]
    assert image_cells.sum() == 1 and torch.equal(image_cells, region_cells) and torch.equal(organ_cells, region_cells)
    assert out["regions"][0].sum() == 0


@pytest.mark.parametrize("flip_axis,k", [(0, 0), (None, 1), (2, 3), (1, 2)])
def test_inverse_restores_image_and_affine(flip_axis, k):
    sample = _sample()
    aug = RandFlipRot90d(("image", "organs"))
    aug.set_draw(flip_axis, k)
    out = aug(sample, randomize=False)
    back = aug.inverse(out)
    assert torch.equal(back["image"].as_tensor(), sample["image"].as_tensor())
    assert torch.allclose(back["image"].affine, sample["image"].affine)


def test_affine_follows_the_voxels():
    sample = _sample()
    aug = RandFlipRot90d("image")
    aug.set_draw(0, 1)
    out = aug(sample, randomize=False)["image"]
    src = torch.nonzero(sample["image"][0] == 0.5)[0].double()
    dst = torch.nonzero(out[0] == 0.5)[0].double()
    world = lambda a, i: a[:3, :3] @ i + a[:3, 3]  # noqa: E731
    assert torch.allclose(world(out.affine, dst), world(sample["image"].affine, src))


def test_non_square_axial_plane_is_a_clear_error():
    aug = RandFlipRot90d("image")
    with pytest.raises(ValueError, match="square in-plane"):
        aug({"image": torch.zeros(1, 4, 6, 3)})
    assert RandFlipRot90d("image", rot_prob=0.0)({"image": torch.zeros(1, 4, 6, 3)})["image"].shape == (1, 4, 6, 3)


def test_draw_probabilities_follow_the_paper():
    aug = RandFlipRot90d("image").set_random_state(seed=0)
    flips, rots, axes, ks = 0, 0, set(), set()
    for _ in range(400):
        aug.randomize()
        flips += aug._flip_axis is not None
        rots += aug._k != 0
        axes.add(aug._flip_axis)
        ks.add(aug._k)
    assert 150 < flips < 250 and 150 < rots < 250
    assert axes == {None, 0, 1, 2} and ks == {0, 1, 2, 3}


@pytest.mark.parametrize("flip_axis,k", list(itertools.product([None, 0, 1, 2], [0, 1, 2, 3])))
def test_every_draw_equals_monai_rand_axis_flip_then_rand_rotate90(flip_axis, k):
    """The same outcome through MONAI's RandAxisFlipd + RandRotate90d(max_k=3, spatial_axes=(0, 1)): same voxels,
    same affine (RandFlipRot90d adds what those lack: set_draw, one record per draw, the square-plane check)."""
    from monai.transforms import Flipd, Rotate90d

    ours = RandFlipRot90d(("image", "organs"))
    ours.set_draw(flip_axis, k)
    out = ours(_sample(), randomize=False)
    ref = {key: v for key, v in _sample().items() if key != "regions"}
    if flip_axis is not None:  # what RandAxisFlipd does once it has drawn the axis
        ref = Flipd(("image", "organs"), spatial_axis=flip_axis)(ref)
    if k:  # what RandRotate90d does once it has drawn k in {1, 2, 3}
        ref = Rotate90d(("image", "organs"), k=k, spatial_axes=(0, 1))(ref)
    for key in ("image", "organs"):
        assert torch.equal(out[key].as_tensor(), ref[key].as_tensor())
        assert torch.allclose(out[key].affine.double(), ref[key].affine.double(), atol=1e-6)


def test_monai_pair_draws_the_paper_outcomes():
    """MONAI's pair draws the same outcome space: one axis of three for the flip and k in {1, 2, 3} for rot90."""
    from monai.transforms import RandAxisFlipd, RandRotate90d

    flip, rot = RandAxisFlipd("image", prob=1.0), RandRotate90d("image", prob=1.0, max_k=3, spatial_axes=(0, 1))
    flip.set_random_state(seed=0), rot.set_random_state(seed=0)
    axes, ks = set(), set()
    for _ in range(60):
        flip.flipper.randomize(torch.zeros(1, 4, 4, 4)), rot.randomize()
        axes.add(flip.flipper._axis), ks.add(rot._rand_k)
    assert axes == {0, 1, 2} and ks == {1, 2, 3}
