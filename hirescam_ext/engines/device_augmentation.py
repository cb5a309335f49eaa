"""The paper's flip / rot90 augmentation applied to a batch after it reached the training device.

Draelos & Carin (HiResCAM, arXiv:2011.08891) flip each training CT along one random axis (p=0.5), then rotate its
axial plane by 90, 180 or 270 degrees (p=0.5), with the allowed regions G_true transformed alike.
:class:`~hirescam_ext.transforms.RandFlipRot90d` does it in the DataLoader workers on float32 volumes;
:class:`AugmentOnDevice` does the same draws on the GPU after the copy, so the workers only read (for example the
int16 ``memmap`` cache) and collate (issue 15: a paper-size volume is 143 MB as int16, 286 MB as float32).

The outcome of a draw equals ``RandFlipRot90d.set_draw(flip_axis, k)`` on the image ``[1, X, Y, Z]`` and on G_true
``[M, D1, D2, H]`` (``tests/engines/test_device_augmentation.py`` checks all 16 outcomes); G_true arrives in the
attention layout ``[M, H, D1, D2]`` and is moved to the image's axis order and back around the flip. The draws use
PyTorch's global CPU generator, whose state the training checkpoints save, so a resumed run draws the same.

Example:
    >>> prepare = AugmentOnDevice(PrepareBatchWithRegions(), flip_prob=0.5, rot_prob=0.5)  # doctest: +SKIP
    >>> image, target = prepare(batch, torch.device("cuda"), non_blocking=True)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from hirescam_ext.regions.layout import from_attention_layout, to_attention_layout
from hirescam_ext.transforms.augmentation import AXIAL_PLANE, flip_rot90

__all__ = ["AugmentOnDevice", "draw_flip_rot90", "apply_flip_rot90"]


def draw_flip_rot90(n: int, flip_prob: float = 0.5, rot_prob: float = 0.5) -> list[tuple[int | None, int]]:
    """``n`` independent draws ``(flip_axis or None, k)`` with RandFlipRot90d's distribution (global torch RNG)."""
    draws = []
    for r in torch.rand(n, 4).tolist():
        axis = min(2, int(r[1] * 3)) if r[0] < flip_prob else None
        k = 1 + min(2, int(r[3] * 3)) if r[2] < rot_prob else 0
        draws.append((axis, k))
    return draws


def apply_flip_rot90(
    image: torch.Tensor, regions: torch.Tensor | None, draws: Sequence[tuple[int | None, int]]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply one draw per scan to ``image`` ``[B, C, X, Y, Z]`` and ``regions`` ``[B, M, H, D1, D2]`` (or ``None``).

    Raises:
        ValueError: a rotation of a non-square axial plane, or a draw count that is not the batch size.
    """
    if len(draws) != image.shape[0]:
        raise ValueError(f"{len(draws)} augmentation draws for a batch of {image.shape[0]}")
    if any(k for _, k in draws) and image.shape[2 + AXIAL_PLANE[0]] != image.shape[2 + AXIAL_PLANE[1]]:
        raise ValueError(f"rot90 of the axial plane needs square in-plane sizes, the batch is {tuple(image.shape)}")
    images, out_regions = [], []
    for b, (axis, k) in enumerate(draws):
        images.append(flip_rot90(image[b], axis, k))
        if regions is not None:
            out_regions.append(to_attention_layout(flip_rot90(from_attention_layout(regions[b]), axis, k)))
    stacked_regions = torch.stack(out_regions) if regions is not None else None
    return torch.stack(images), stacked_regions


class AugmentOnDevice:
    """Wrap a prepare-batch callable (``(batch, device, non_blocking, **kwargs) -> (image, target)``) so that the
    paper's flip / rot90 is applied to the image, and to ``target["regions"]`` alike, on the device.

    Give it to the trainer only (``train#trainer#prepare_batch``): validation and evaluation share the plain
    prepare-batch and must not be augmented. Turn the loader's ``RandFlipRot90d`` off when this is on (the bundle's
    ``augment_on_device`` switch does both).

    Args:
        prepare_batch: the wrapped prepare-batch (for example :class:`PrepareBatchWithRegions`).
        flip_prob: probability of the flip along one random axis (paper: 0.5).
        rot_prob: probability of the axial rot90, ``k`` uniform in {1, 2, 3} (paper: 0.5).
    """

    def __init__(self, prepare_batch: Callable[..., Any], flip_prob: float = 0.5, rot_prob: float = 0.5) -> None:
        for name, p in (("flip_prob", flip_prob), ("rot_prob", rot_prob)):
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {p}")
        self.prepare_batch = prepare_batch
        self.flip_prob, self.rot_prob = float(flip_prob), float(rot_prob)

    def __call__(self, batchdata: dict[str, Any], device: Any = None, non_blocking: bool = False, **kwargs: Any) -> Any:
        image, target = self.prepare_batch(batchdata, device, non_blocking, **kwargs)
        draws = draw_flip_rot90(image.shape[0], self.flip_prob, self.rot_prob)
        regions = target.get("regions") if isinstance(target, dict) else None
        image, regions = apply_flip_rot90(image, regions, draws)
        if regions is not None:
            target = {**target, "regions": regions}
        return image, target
