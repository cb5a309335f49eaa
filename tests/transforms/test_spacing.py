"""ResampleToSpacingd: geometry of the fast resampler and its exact inverse."""

from __future__ import annotations

import torch
from monai.data import MetaTensor

from hirescam_ext.transforms.spacing import CropForSpacingd, ResampleToSpacingd, resample_to_spacing


def _volume(shape=(10, 12, 8), spacing=(0.7, 0.7, 1.0)):
    affine = torch.diag(torch.tensor([*spacing, 1.0], dtype=torch.float64))
    affine[:3, 3] = torch.tensor([-5.0, 3.0, 10.0])
    return MetaTensor(torch.zeros((1, *shape)), affine=affine)


def test_output_spacing_and_shape_cover_the_field_of_view():
    img = _volume()
    out, affine = resample_to_spacing(img.as_tensor(), img.affine, (0.35, 1.4, 0.5))
    assert tuple(out.shape[1:]) == (20, 6, 16)
    assert torch.allclose(torch.linalg.norm(affine[:3, :3], dim=0), torch.tensor([0.35, 1.4, 0.5], dtype=torch.float64))
    # the first voxel's corner stays where it was: world corner = affine @ (-0.5, -0.5, -0.5)
    corner = torch.tensor([-0.5, -0.5, -0.5, 1.0], dtype=torch.float64)
    assert torch.allclose(affine @ corner, img.affine @ corner)


def test_marker_keeps_its_world_position():
    img = _volume(shape=(20, 20, 20), spacing=(1.0, 1.0, 1.0))
    img[0, 8:10, 4:6, 12:14] = 1.0
    out = ResampleToSpacingd("image", pixdim=0.5, mode="nearest")({"image": img})["image"]
    idx = torch.nonzero(out[0] > 0.5).double()
    world_out = (out.affine[:3, :3] @ idx.T).T + out.affine[:3, 3]
    src = torch.nonzero(img[0] > 0.5).double()
    world_in = (img.affine[:3, :3] @ src.T).T + img.affine[:3, 3]
    assert torch.allclose(world_out.mean(0), world_in.mean(0), atol=1e-6)


def test_inverse_restores_shape_affine_and_labels():
    labels = torch.randint(0, 4, (1, 9, 7, 5), dtype=torch.uint8)
    img = MetaTensor(labels, affine=torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0], dtype=torch.float64)))
    t = ResampleToSpacingd("organs", pixdim=(1.0, 1.0, 1.0), mode="nearest")
    out = t({"organs": img})
    assert out["organs"].dtype == torch.uint8 and tuple(out["organs"].shape[1:]) == (18, 14, 15)
    back = t.inverse(out)["organs"]
    assert torch.equal(back.as_tensor(), labels) and torch.allclose(back.affine, img.affine)
    assert len(back.applied_operations) == 0


def test_linear_ramp_is_reproduced_at_the_new_voxel_centres():
    x, y, z = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), torch.arange(12.0), indexing="ij")
    img = MetaTensor((x + 2 * y - z)[None], affine=torch.diag(torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=torch.float64)))
    ours = ResampleToSpacingd("image", pixdim=2.0)({"image": img.clone()})["image"]
    # a linear ramp resampled with corner-aligned geometry stays the same ramp at the new voxel centres
    idx = torch.stack(torch.meshgrid(*[torch.arange(s, dtype=torch.float64) for s in ours.shape[1:]], indexing="ij"))
    src = 2.0 * idx + 0.5  # output index -> input index
    expected = src[0] + 2 * src[1] - src[2]
    inner = (slice(1, -1),) * 3
    assert torch.allclose(ours[0][inner].double(), expected[inner], atol=1e-4)


def test_crop_for_spacing_keeps_what_the_final_crop_needs_and_inverts():
    img = _volume(shape=(100, 100, 30), spacing=(0.7, 0.7, 1.0))
    img[0, 50, 50, 15] = 7.0
    t = CropForSpacingd("image", pixdim=0.8, spatial_size=(40, 40, 40), margin=2)
    out = t({"image": img})
    assert tuple(out["image"].shape[1:]) == (50, 50, 30)  # ceil(40 * 0.8 / 0.7) + 4; z is too short to crop
    world = lambda a, i: a[:3, :3] @ torch.tensor(i, dtype=torch.float64) + a[:3, 3]  # noqa: E731
    idx = torch.nonzero(out["image"][0] == 7.0)[0].tolist()
    assert torch.allclose(world(out["image"].affine, idx), world(img.affine, [50, 50, 15]))
    back = t.inverse(out)["image"]
    assert torch.equal(back.as_tensor(), img.as_tensor()) and torch.allclose(back.affine, img.affine)
