"""Attention-grid layout: image order ``[M, D1, D2, H]`` <-> AxialNet order ``[M, H, D1, D2]``, and triplets.

AxialNet (Draelos & Carin, HiResCAM, arXiv:2011.08891) regroups the ``Z`` axial slices into ``H = Z / 3``
triplets; its attention maps are ``[M, H, D1, D2]`` where triplet ``h`` covers slices ``3h, 3h + 1, 3h + 2``,
``D1`` runs along ``X`` and ``D2`` along ``Y``. Allowed regions travel through the data pipeline in the image's
axis order ``[M, D1, D2, H]`` and are permuted at the end by :class:`ToAttentionLayoutd`.
:func:`attention_to_image_grid` goes the other way, spreading a map over the slices it came from.

Example:
    >>> import torch
    >>> att = torch.zeros(80, 135, 6, 6)
    >>> list(triplet_slices(2))
    [6, 7, 8]
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import InvertibleTransform, MapTransform

__all__ = [
    "SLICES_PER_TRIPLET",
    "triplet_slices",
    "to_attention_layout",
    "from_attention_layout",
    "attention_to_image_grid",
    "crop_to_triplets",
    "ToAttentionLayoutd",
    "ToAttentionLayoutD",
    "ToAttentionLayoutDict",
]

SLICES_PER_TRIPLET = 3


def triplet_slices(h: int, slices_per_triplet: int = SLICES_PER_TRIPLET) -> range:
    """Axial slice indices (along ``Z``) that AxialNet's triplet ``h`` is made of."""
    return range(h * slices_per_triplet, (h + 1) * slices_per_triplet)


def crop_to_triplets(x: torch.Tensor, h: int, what: str = "volume") -> torch.Tensor:
    """The first ``h`` triplets of slices of ``x`` ``[..., Z]`` (``3h`` slices; the one or two trailing slices that
    make no triplet are dropped, as AxialNet drops them).

    Raises:
        ValueError: ``x`` has fewer than ``3h`` slices, or a whole triplet or more beyond them: it is not on the grid
            of ``h`` triplets (e.g. an organ map at a scan's own resolution, not resampled to the network's); ``what``
            names it in the message.
    """
    z_used = int(h) * SLICES_PER_TRIPLET
    if x.shape[-1] < z_used:
        raise ValueError(f"{what} has {x.shape[-1]} slices, fewer than {h} triplets need ({z_used})")
    if x.shape[-1] >= z_used + SLICES_PER_TRIPLET:
        raise ValueError(
            f"{what} has {x.shape[-1]} slices, {x.shape[-1] // SLICES_PER_TRIPLET} triplets, but the grid has {h}: "
            f"it is not on the network's grid (resample it as the scan is, e.g. "
            f"hirescam_ext.transforms.preprocessing.prepare_volumes, before putting it on the attention grid)"
        )
    return x[..., :z_used]


def to_attention_layout(x: torch.Tensor) -> torch.Tensor:
    """``[..., D1, D2, H]`` -> ``[..., H, D1, D2]``."""
    return torch.movedim(torch.as_tensor(x), -1, -3)


def from_attention_layout(x: torch.Tensor) -> torch.Tensor:
    """``[..., H, D1, D2]`` -> ``[..., D1, D2, H]``."""
    return torch.movedim(torch.as_tensor(x), -3, -1)


def attention_to_image_grid(
    attention: torch.Tensor,
    spatial_size: Sequence[int],
    mode: str = "nearest",
    slices_per_triplet: int = SLICES_PER_TRIPLET,
) -> torch.Tensor:
    """Spread an AxialNet map ``[M, H, D1, D2]`` over the image grid ``[M, X, Y, Z]``.

    Triplet ``h`` fills slices ``3h..3h+2``; in-plane the ``D1 x D2`` cells are resized to ``X x Y`` (``"nearest"``
    or ``"linear"``). Slices beyond ``3H`` (when ``Z`` is not a multiple of 3) are zero.
    """
    if attention.ndim != 4:
        raise ValueError(f"attention must be [M, H, D1, D2], got shape {tuple(attention.shape)}")
    x, y, z = (int(s) for s in spatial_size)
    m, h = attention.shape[0], attention.shape[1]
    if h * slices_per_triplet > z:
        raise ValueError(f"{h} triplets need {h * slices_per_triplet} slices, the image has {z}")
    planes = attention.float().reshape(m * h, 1, *attention.shape[2:])
    if mode == "nearest":
        planes = F.interpolate(planes, size=(x, y), mode="nearest-exact")
    elif mode == "linear":
        planes = F.interpolate(planes, size=(x, y), mode="bilinear", align_corners=False)
    else:
        raise ValueError(f"mode must be 'nearest' or 'linear', got {mode!r}")
    planes = planes.reshape(m, h, x, y).permute(0, 2, 3, 1)  # [M, X, Y, H]
    out = torch.zeros((m, x, y, z), dtype=planes.dtype)
    out[..., : h * slices_per_triplet] = planes.repeat_interleave(slices_per_triplet, dim=-1)
    return out


class ToAttentionLayoutd(MapTransform, InvertibleTransform):
    """Permute ``keys`` (default ``regions``) from ``[M, D1, D2, H]`` to AxialNet's ``[M, H, D1, D2]``.

    Put it last in the training pipeline, after :class:`~hirescam_ext.transforms.augmentation.RandFlipRot90d`.
    """

    def __init__(self, keys: KeysCollection = "regions", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            if d[key].ndim != 4:
                raise ValueError(f"{key!r} must be [M, D1, D2, H], got shape {tuple(d[key].shape)}")
            d[key] = to_attention_layout(d[key]).contiguous()
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = from_attention_layout(d[key]).contiguous()
        return d


ToAttentionLayoutD = ToAttentionLayoutDict = ToAttentionLayoutd
