"""HU windowing of the HiResCAM paper in one fused pass: clip, scale to [0, 1], optional centring.

Draelos & Carin (HiResCAM, arXiv:2011.08891) clip CT intensities to [-1000, 800] HU, scale them to [0, 1] and
subtract 0.449. :class:`HUWindowd` computes the same values as ``ScaleIntensityRanged(a_min, a_max, 0, 1,
clip=True)`` followed by ``ShiftIntensityd(center)`` but in place on one fresh float tensor, which on a full-size
volume (420 x 420 x 405) is several times faster than the two MONAI transforms on a ``MetaTensor``.

Example:
    >>> window = HUWindowd(keys="image", hu_range=(-1000, 800), center=-0.449)
    >>> out = window({"image": volume_hu})  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

__all__ = ["hu_window", "HUWindowd", "HUWindowD", "HUWindowDict"]


def hu_window(
    x: torch.Tensor, hu_range: Sequence[float] = (-1000.0, 800.0), center: float | None = None
) -> torch.Tensor:
    """Return ``clip(x, low, high)`` scaled to [0, 1] plus ``center`` as a new float32 tensor (``x`` untouched)."""
    low, high = float(hu_range[0]), float(hu_range[1])
    if not high > low:
        raise ValueError(f"hu_range must be (low, high) with high > low, got {tuple(hu_range)}")
    if x.dtype == torch.float32:
        out = torch.clamp(x, low, high)  # a new tensor: the in-place steps below never touch x
    else:
        out = x.to(torch.float32).clamp_(low, high)
    scale = 1.0 / (high - low)
    out.mul_(scale).add_(float(center or 0.0) - low * scale)  # (x - low) / (high - low) + center
    return out


class HUWindowd(MapTransform):
    """Clip to ``hu_range``, scale to [0, 1], add ``center`` (``None``/0: no shift); one fused pass per key.

    Args:
        keys: CT keys.
        hu_range: ``(low, high)`` in HU (paper: ``(-1000, 800)``).
        center: value added after scaling (paper: ``-0.449``).
        allow_missing_keys: do not raise for absent keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        hu_range: Sequence[float] = (-1000.0, 800.0),
        center: float | None = None,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        if not float(hu_range[1]) > float(hu_range[0]):
            raise ValueError(f"hu_range must be (low, high) with high > low, got {tuple(hu_range)}")
        self.hu_range = (float(hu_range[0]), float(hu_range[1]))
        self.center = center

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            x = d[key]
            if isinstance(x, MetaTensor):
                out = hu_window(x.as_tensor(), self.hu_range, self.center)
                d[key] = MetaTensor(out, meta=dict(x.meta), applied_operations=list(x.applied_operations))
            else:
                d[key] = hu_window(torch.as_tensor(x), self.hu_range, self.center)
        return d


HUWindowD = HUWindowDict = HUWindowd
