"""ct_preprocessing: same tensors from DICOM/NRRD/NIfTI, RAS left-right, paper values, inversion to the scan grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from hirescam_ext.data.radchestct import write_radchestct_npz
from hirescam_ext.transforms.preprocessing import ct_preprocessing, invert_to_original, prepare_hu_volume

SMALL = dict(spacing=(4.0, 4.0, 4.0), spatial_size=(72, 72, 81))
# CIP region codes (value % 256), from the folder's PROVENANCE.md
RIGHT_REGIONS = (2, 4, 5, 6, 12, 13, 14)
LEFT_REGIONS = (3, 7, 8, 9, 10, 11)


@pytest.fixture(scope="module")
def cip_items(cip):
    pre = ct_preprocessing(label_dtype=np.int16, **SMALL)
    paths = {"dicom": cip / "ct-64Dicom", "nrrd": cip / "ct-64.nrrd", "nifti": cip / "derived" / "ct-64.nii.gz"}
    return pre, {k: pre({"image": str(p), "organs": str(cip / "lm-64.nrrd")}) for k, p in paths.items()}


@pytest.mark.shared_data
def test_dicom_nrrd_nifti_give_identical_tensors(cip_items):
    _, items = cip_items
    ref = items["nrrd"]["image"]
    assert tuple(ref.shape) == (1, 72, 72, 81)
    for name in ("dicom", "nifti"):
        assert torch.equal(items[name]["image"].as_tensor(), ref.as_tensor()), name
        assert torch.allclose(items[name]["image"].affine, ref.affine, atol=1e-3), name  # DICOM float precision


@pytest.mark.shared_data
def test_left_lung_has_smaller_axis0_indices(cip_items):
    _, items = cip_items
    regions = items["nrrd"]["organs"][0] % 256
    x = torch.arange(regions.shape[0], dtype=torch.float64)[:, None, None]
    right = torch.isin(regions, torch.tensor(RIGHT_REGIONS))
    left = torch.isin(regions, torch.tensor(LEFT_REGIONS))
    assert left.sum() > 1000 and right.sum() > 1000
    assert float((x * left).sum() / left.sum()) + 10 < float((x * right).sum() / right.sum())


@pytest.mark.shared_data
def test_values_are_windowed_and_centred(cip_items):
    _, items = cip_items
    img = items["nrrd"]["image"]
    assert abs(float(img.min()) + 0.449) < 1e-6 and float(img.max()) <= 0.551 + 1e-6
    assert img.dtype == torch.float32


def test_padding_uses_the_minimum():
    img = MetaTensor(torch.full((1, 4, 4, 4), 500.0), affine=torch.eye(4, dtype=torch.float64))
    pre = ct_preprocessing(load=False, label_map_keys=(), spacing=None, spatial_size=(8, 8, 8))
    out = pre({"image": img})["image"]
    assert float(out[0, 0, 0, 0]) == pytest.approx(-0.449)  # padding
    assert float(out[0, 4, 4, 4]) == pytest.approx(1500 / 1800 - 0.449)  # 500 HU


def test_fast_and_monai_intensity_paths_agree():
    ramp = torch.linspace(-1500, 1500, 6 * 7 * 8).reshape(1, 6, 7, 8)
    img = MetaTensor(ramp, affine=torch.eye(4, dtype=torch.float64))
    kw = dict(load=False, label_map_keys=(), spacing=(0.5, 0.5, 0.5), spatial_size=(10, 10, 20))
    fast = ct_preprocessing(**kw)({"image": img.clone()})["image"]
    slow = ct_preprocessing(fast_intensity=False, **kw)({"image": img.clone()})["image"]
    assert torch.allclose(fast.as_tensor(), torch.as_tensor(slow), atol=1e-6)


def test_npz_route_lands_in_the_same_ras_frame(tmp_path):
    vol = np.full((20, 24, 24), -1000, dtype=np.int16)  # [slices, rows, cols]
    vol[:, 10:14, 2:6] = 0  # tissue on the patient's right (low columns)
    write_radchestct_npz(tmp_path / "a.npz", vol)
    out = ct_preprocessing(spacing=(0.8, 0.8, 0.8), spatial_size=(24, 24, 20))({"image": str(tmp_path / "a.npz")})
    tissue = torch.nonzero(out["image"][0] > 0)
    assert tissue[:, 0].min() >= 12  # right side = large axis-0 indices


@pytest.mark.parametrize("precrop", [True, False])
def test_inverted_marker_lands_on_the_original_voxels(precrop):
    # an LPS-ordered scan with anisotropic voxels, larger than the output (so the pre-crop acts), and a marker
    affine = torch.diag(torch.tensor([-0.7, -0.7, 1.5, 1.0], dtype=torch.float64))
    scan = torch.full((1, 80, 72, 20), -1000.0)
    scan[0, 37:43, 29:35, 11:15] = 400.0
    pre = ct_preprocessing(load=False, label_map_keys=(), spacing=(1.0, 1.0, 1.0), spatial_size=(32, 32, 32),
                           precrop=precrop)
    item = pre({"image": MetaTensor(scan, affine=affine)})
    marker_map = (item["image"] > 0.0).float()  # "a map computed on the preprocessed grid"
    back = invert_to_original(marker_map, item, pre, mode="nearest")
    assert tuple(back.shape) == tuple(scan.shape)
    assert torch.allclose(back.affine, affine)
    hit = (back[0] > 0.5).as_tensor()
    truth = scan[0] > 0
    near_truth = torch.nn.functional.max_pool3d(truth.float()[None, None], 3, stride=1, padding=1)[0, 0] > 0
    assert hit.sum() >= 0.6 * truth.sum() and not (hit & ~near_truth).any()  # no hit farther than one voxel
    centre = lambda m: torch.nonzero(m).double().mean(0)  # noqa: E731
    assert torch.allclose(centre(hit), centre(truth), atol=0.5)


def test_inverting_through_a_single_transform_that_is_not_a_compose() -> None:
    from hirescam_ext.transforms import ResampleToSpacingd

    step = ResampleToSpacingd("image", pixdim=2.0)
    scan = MetaTensor(torch.zeros(1, 20, 20, 10), affine=torch.eye(4))
    item = step({"image": scan})
    back = invert_to_original(item["image"], item, step, mode="linear")
    assert tuple(back.shape) == (1, 20, 20, 10)


def test_inverting_an_item_without_its_applied_operations_names_the_scan_and_the_cache() -> None:
    """A disk-cached item keeps no record of its operations (hirescam_ext.data.dataset.CACHED_META_KEYS)."""
    pre = ct_preprocessing(load=False, label_map_keys=(), spacing=(1.0, 1.0, 1.0), spatial_size=(16, 16, 16))
    item = pre({"image": MetaTensor(torch.zeros(1, 20, 20, 10) - 1000.0, meta={"filename_or_obj": "ct7.nii.gz"})})
    item["image"].applied_operations = []
    with pytest.raises(ValueError, match="ct7.nii.gz: .*no applied operations.*cache"):
        invert_to_original(item["image"] > 0, item, pre)


def test_precrop_changes_the_grid_by_about_one_voxel_at_most():
    affine = torch.diag(torch.tensor([-0.7, -0.7, 1.0, 1.0], dtype=torch.float64))
    scan = MetaTensor(torch.randn(1, 90, 90, 60) * 300, affine=affine)
    kw = dict(load=False, label_map_keys=(), spacing=(0.8, 0.8, 0.8), spatial_size=(48, 48, 40))
    fast = ct_preprocessing(**kw)({"image": scan.clone()})["image"]
    full = ct_preprocessing(precrop=False, **kw)({"image": scan.clone()})["image"]
    assert fast.shape == full.shape
    offset = torch.linalg.solve(full.affine, fast.affine[:, 3])[:3]  # fast's first voxel in full's voxel units
    assert offset.abs().max() < 1.5  # integer crop starts: about one voxel
    assert len(fast.applied_operations) == len(full.applied_operations) + 1


@pytest.mark.shared_data
def test_inversion_of_a_coarse_map_and_of_the_organ_map(cip_items, cip):
    from monai.transforms import LoadImage

    pre, items = cip_items
    item = items["nrrd"]
    original = LoadImage(image_only=True, ensure_channel_first=True, dtype=np.int16)(str(cip / "lm-64.nrrd"))
    back = invert_to_original(item["organs"].float(), item, pre, mode="nearest")
    assert (back.round().to(torch.int16) == original).float().mean() > 0.99
    coarse = torch.zeros(1, 6, 6, 27)
    coarse[0, 0] = 1.0  # the patient's left-most column of cells
    spread = invert_to_original(coarse, item, pre, mode="nearest")
    assert tuple(spread.shape) == tuple(original.shape)


def test_linear_inversion_through_augmentation_keeps_a_smooth_map_smooth():
    from monai.transforms import Compose

    from hirescam_ext.transforms import RandFlipRot90d

    affine = torch.diag(torch.tensor([-0.7, -0.7, 1.5, 1.0], dtype=torch.float64))
    scan = MetaTensor(torch.zeros(1, 40, 40, 20), affine=affine)
    pre = ct_preprocessing(load=False, label_map_keys=(), spacing=(1.0, 1.0, 1.0), spatial_size=(28, 28, 30))
    train = Compose([pre, RandFlipRot90d("image")])
    train.transforms[-1].set_draw(0, 1)
    item = train.transforms[-1](pre({"image": scan}), randomize=False)
    # a map that grows along world x (patient right): after inversion it must grow along world x again
    shape = item["image"].shape[1:]
    grid = torch.stack(torch.meshgrid(*[torch.arange(s, dtype=torch.float64) for s in shape], indexing="ij"))
    world_x = (item["image"].affine[:3, :3] @ grid.reshape(3, -1))[0]
    cam = world_x.reshape(shape)[None].float()
    back = invert_to_original(cam, item, train, mode="linear")
    assert tuple(back.shape) == (1, 40, 40, 20) and torch.allclose(back.affine, affine)
    profile = back[0, 6:34, 20, 10]  # inside the region the crop kept; voxel x runs toward patient left (LPS)
    assert torch.all(profile[1:] < profile[:-1])


def test_attention_layout_map_is_inverted_like_the_image_layout():
    affine = torch.diag(torch.tensor([-1.0, -1.0, 1.0, 1.0], dtype=torch.float64))
    scan = MetaTensor(torch.zeros(1, 24, 24, 24), affine=affine)
    pre = ct_preprocessing(load=False, label_map_keys=(), spacing=(2.0, 2.0, 2.0), spatial_size=(12, 12, 12))
    item = pre({"image": scan})
    att = torch.zeros(1, 4, 3, 3)  # [M, H, D1, D2]
    att[0, 3, 2, 0] = 1.0  # last triplet, largest X (patient right), smallest Y
    a = invert_to_original(att, item, pre, layout="attention")
    b = invert_to_original(att.permute(0, 2, 3, 1), item, pre)
    assert torch.equal(a.as_tensor(), b.as_tensor())
    hit = torch.nonzero(a[0] > 0.5).double().mean(0)
    assert hit[0] < 12 and hit[1] > 12 and hit[2] > 12  # LPS voxel order: right = small x, posterior = large y


def test_prepare_hu_volume_averages_a_finer_scan_onto_the_model_grid_in_hu() -> None:
    """Alternating air and water columns at 2 mm become -500 HU at 4 mm; HU is not windowed, the pad is -1024."""
    hu = np.tile(np.array([-1000, 0], np.int16), 8)[:, None, None] * np.ones((1, 16, 12), np.int16)
    out = prepare_hu_volume(hu, np.diag([2.0, 2.0, 2.0, 1.0]), (4.0, 4.0, 4.0), (10, 8, 6))
    assert out.shape == (10, 8, 6) and out.dtype == torch.float32
    assert torch.allclose(out[1:9], torch.tensor(-500.0)) and (out[0] == -1024).all() and (out[9] == -1024).all()


def test_prepare_volumes_takes_label_maps_by_nearest_neighbour_on_the_image_grid() -> None:
    """One chain for all: the HU volume equals prepare_hu_volume's, an organ map and a stack of masks keep their
    dtype and layout, keep only their own values (no blending) and are padded with 0 where the image gets -1024."""
    from hirescam_ext.transforms.preprocessing import prepare_volumes

    hu = np.tile(np.array([-1000, 0], np.int16), 8)[:, None, None] * np.ones((1, 16, 12), np.int16)
    organs = np.zeros((16, 16, 12), np.uint8)
    organs[:8], organs[8:] = 1, 2
    masks = np.zeros((2, 16, 16, 12), np.uint8)
    masks[0, 4:6, 4:6, 4:6] = 1  # a 2-voxel cube at 2 mm: one voxel at 4 mm
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    out, maps = prepare_volumes(hu, affine, (4.0, 4.0, 4.0), (10, 8, 6), {"organs": organs, "lesions": masks})
    assert torch.equal(out, prepare_hu_volume(hu, affine, (4.0, 4.0, 4.0), (10, 8, 6)))
    assert maps["organs"].shape == (10, 8, 6) and maps["organs"].dtype == torch.uint8
    assert set(maps["organs"][1:9].unique().tolist()) == {1, 2} and (maps["organs"][0] == 0).all()
    assert maps["lesions"].shape == (2, 10, 8, 6) and maps["lesions"].dtype == torch.uint8
    assert int(maps["lesions"][0].sum()) == 1 and int(maps["lesions"][1].sum()) == 0


def test_prepare_volumes_refuses_a_label_map_named_image() -> None:
    from hirescam_ext.transforms.preprocessing import prepare_volumes

    with pytest.raises(ValueError, match="'image'"):
        prepare_volumes(np.zeros((4, 4, 4)), np.eye(4), (1.0, 1.0, 1.0), (4, 4, 4), {"image": np.zeros((4, 4, 4))})
