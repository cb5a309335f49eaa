"""Numerical safety, property based (hypothesis): the mask loss, CAM normalization, OrganIoU and the augmentation
stay finite and in range for all-zero maps, huge logits (|a| up to 1e4), empty allowed regions and bf16/fp16."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hirescam_ext.losses.mask_loss import ClassificationMaskLoss, MaskLoss
from hirescam_ext.metrics.organ_iou import OrganIoU, compute_organ_iou
from hirescam_ext.transforms.augmentation import RandFlipRot90d
from hirescam_ext.visualize.postprocess import normalize_cam

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = [torch.float32, torch.bfloat16, torch.float16]

finite_1e4 = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False, width=32)
shapes = hnp.array_shapes(min_dims=3, max_dims=5, min_side=1, max_side=4)


@st.composite
def attention_and_regions(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    shape = draw(shapes)
    attention = draw(hnp.arrays(np.float32, shape, elements=finite_1e4))
    regions = draw(hnp.arrays(np.uint8, shape, elements=st.integers(0, 1)))
    return attention, regions


@FAST
@given(data=attention_and_regions(), dtype=st.sampled_from(DTYPES))
def test_mask_loss_is_finite_and_non_negative(data: tuple[np.ndarray, np.ndarray], dtype: torch.dtype) -> None:
    attention, regions = data
    a = torch.from_numpy(attention).to(dtype).requires_grad_(True)
    g = torch.from_numpy(regions)
    loss = MaskLoss()(a, g)
    assert torch.isfinite(loss) and float(loss) >= 0.0
    loss.backward()
    assert torch.isfinite(a.grad.float()).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [1e4, -1e4, 0.0])
def test_mask_loss_extremes(dtype: torch.dtype, value: float) -> None:
    a = torch.full((2, 3, 4, 2, 2), value, dtype=dtype, requires_grad=True)
    for regions in (torch.zeros(2, 3, 4, 2, 2), torch.ones(2, 3, 4, 2, 2)):  # all forbidden / nothing forbidden
        loss = MaskLoss()(a, regions)
        assert torch.isfinite(loss) and float(loss) >= 0.0
        (grad,) = torch.autograd.grad(loss, a)
        assert torch.isfinite(grad.float()).all()
    softplus = max(value, 0.0) + np.log1p(np.exp(-abs(value)))
    assert float(MaskLoss()(a, torch.zeros_like(a))) == pytest.approx(softplus, rel=1e-2)


def test_combined_loss_under_cpu_autocast_bf16_is_finite() -> None:
    logits = torch.tensor([[1e4, -1e4, 0.0]], requires_grad=True)
    attention = torch.tensor([1e4, -1e4, 0.0]).repeat(1, 3, 2, 2, 2, 1)[..., 0].requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pred = {"logits": logits * 1.0, "attention": attention * 1.0}
        target = {"label": torch.tensor([[0.0, 1.0, 1.0]]), "regions": torch.zeros(1, 3, 2, 2, 2)}
        loss = ClassificationMaskLoss()(pred, target)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(attention.grad).all()


@FAST
@given(maps=hnp.arrays(np.float32, shapes, elements=finite_1e4), dtype=st.sampled_from(DTYPES))
def test_normalize_cam_output_is_finite_and_in_unit_interval(maps: np.ndarray, dtype: torch.dtype) -> None:
    out = normalize_cam(torch.from_numpy(maps).to(dtype))
    assert out.dtype == dtype and out.shape == maps.shape
    out = out.float()
    assert torch.isfinite(out).all()
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_normalize_cam_all_zero_and_constant_maps_give_zero(dtype: torch.dtype) -> None:
    for fill in (0.0, 7.0, -3.0):
        out = normalize_cam(torch.full((1, 2, 3, 4, 4), fill, dtype=dtype))
        assert torch.equal(out.float(), torch.zeros(1, 2, 3, 4, 4))


@FAST
@given(
    maps=hnp.arrays(np.float32, (2, 3, 3, 2, 2), elements=finite_1e4),
    regions=hnp.arrays(np.uint8, (2, 3, 3, 2, 2), elements=st.integers(0, 1)),
    labels=hnp.arrays(np.uint8, (2, 3), elements=st.integers(0, 1)),
    dtype=st.sampled_from(DTYPES),
)
def test_organ_iou_is_in_unit_interval(maps: np.ndarray, regions: np.ndarray, labels: np.ndarray, dtype) -> None:
    norm = normalize_cam(torch.from_numpy(maps).to(dtype))
    iou, label_index, sample_index = compute_organ_iou(norm, torch.from_numpy(regions), torch.from_numpy(labels))
    assert iou.shape == (int(labels.sum()), 53)
    assert torch.isfinite(iou).all()
    assert bool(((iou >= 0.0) & (iou <= 1.0)).all())
    metric = OrganIoU(label_names=["a", "b", "c"])
    metric(norm, torch.from_numpy(regions), torch.from_numpy(labels))
    result = metric.aggregate()
    if result.n_pairs:
        assert 0.0 <= result.mean <= 1.0
    else:
        assert np.isnan(result.mean)


def test_organ_iou_with_empty_allowed_regions_and_zero_maps_is_zero() -> None:
    zeros = torch.zeros(1, 2, 3, 2, 2)
    iou, _, _ = compute_organ_iou(zeros, zeros, torch.ones(1, 2))
    assert torch.equal(iou, torch.zeros(2, 53))


def test_organ_iou_rejects_unnormalized_or_nan_maps_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="NaN or infinite"):
        compute_organ_iou(torch.full((1, 1, 2, 2, 2), float("nan")), torch.ones(1, 1, 2, 2, 2), torch.ones(1, 1))
    with pytest.raises(ValueError, match=r"normalized to \[0, 1\]"):
        compute_organ_iou(torch.full((1, 1, 2, 2, 2), 1e4), torch.ones(1, 1, 2, 2, 2), torch.ones(1, 1))


# ------------------------------------------------------------------ augmentation keeps image and regions aligned
def _block_any(image: torch.Tensor, cell: tuple[int, int, int]) -> torch.Tensor:
    """Regions on the attention grid ``[1, D1, D2, H]``: a cell is on when any voxel of its block is on."""
    c, x, y, z = image.shape
    blocks = image.reshape(c, x // cell[0], cell[0], y // cell[1], cell[1], z // cell[2], cell[2])
    return blocks.amax(dim=(2, 4, 6))


@settings(max_examples=40, deadline=None)
@given(
    mask=hnp.arrays(np.uint8, (8, 8, 6), elements=st.integers(0, 1)),
    seed=st.integers(0, 2**31 - 1),
)
def test_flip_rot90_keeps_image_and_regions_aligned(mask: np.ndarray, seed: int) -> None:
    image = torch.from_numpy(mask)[None].float()
    regions = _block_any(image, (2, 2, 3))  # [1, 4, 4, 2], the image's axis order
    aug = RandFlipRot90d(["image", "regions"], flip_prob=0.5, rot_prob=0.5)
    aug.set_random_state(seed)
    out = aug({"image": image, "regions": regions})
    assert torch.equal(_block_any(torch.as_tensor(out["image"]), (2, 2, 3)), torch.as_tensor(out["regions"]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_normalize_cam_with_an_overflowed_cell_stays_finite(dtype: torch.dtype) -> None:
    maps = torch.tensor([[[0.0, 2.0, float("inf"), -float("inf")]]], dtype=dtype)
    out = normalize_cam(maps).float()
    assert torch.isfinite(out).all()
    assert out[0, 0, 2] == 1.0 and out[0, 0, 3] == 0.0 and out[0, 0, 0] == 0.0


# ------------------------------------------------------------------ preprocessing transforms
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    volume=hnp.arrays(
        np.int16, hnp.array_shapes(min_dims=3, max_dims=3, min_side=3, max_side=12),
        elements=st.integers(-3024, 4000),
    ),
    spacing=st.tuples(*[st.floats(0.4, 5.0) for _ in range(3)]),
    size=st.tuples(*[st.integers(3, 16) for _ in range(3)]),
)  # fmt: skip
def test_preprocessing_output_has_the_requested_size_and_window(volume, spacing, size) -> None:
    """Any HU volume (padding -3024, bone 4000), any voxel size: exact output size, finite, inside the window."""
    from monai.data import MetaTensor

    from hirescam_ext.transforms.preprocessing import ct_preprocessing

    affine = torch.diag(torch.tensor([*spacing, 1.0], dtype=torch.float64))
    image = MetaTensor(torch.from_numpy(volume)[None], affine=affine)
    pre = ct_preprocessing(load=False, label_map_keys=(), spacing=(2.0, 2.0, 2.0), spatial_size=size)
    out = pre({"image": image})["image"]
    assert tuple(out.shape) == (1, *size)
    assert torch.isfinite(out).all()
    assert float(out.min()) >= -0.449 - 1e-5 and float(out.max()) <= 1 - 0.449 + 1e-5
