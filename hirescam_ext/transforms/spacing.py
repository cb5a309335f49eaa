"""Fast, invertible resampling to a target voxel spacing (a drop-in for ``monai.transforms.Spacingd``).

MONAI's ``Spacingd`` resamples through a general affine grid; on two CPU cores it needs about 14 s for a
512x512x400 scan at 0.7x0.7x1.0 mm going to 0.8 mm (measured in this project). Resampling to a new spacing
along the voxel axes is separable, so :class:`ResampleToSpacingd` uses ``torch.nn.functional.interpolate``
(trilinear or nearest) and finishes the same job in a fraction of a second.

Geometry: the output covers exactly the input's field of view (voxel corners aligned, ``align_corners=False``):
``n_out = round(n_in * spacing_in / pixdim)`` voxels per axis, so the realised spacing equals ``pixdim`` up to the
rounding of the voxel count (at most half a voxel over the whole extent); the affine records the realised spacing
exactly, and the voxel axes keep their directions (like ``Spacingd`` with ``diagonal=False``). The inverse maps
back to the original grid with the same corner-aligned correspondence, so a marker survives a round trip.

Example:
    >>> resample = ResampleToSpacingd(keys=("image", "organs"), pixdim=(0.8, 0.8, 0.8), mode=("bilinear", "nearest"))
    >>> out = resample({"image": image, "organs": organs})  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform
from monai.utils import ensure_tuple_rep

__all__ = ["resample_to_spacing", "ResampleToSpacingd", "ResampleToSpacingD", "ResampleToSpacingDict"]

_LINEAR = {"bilinear", "trilinear", "linear"}
_NEAREST = {"nearest", "nearest-exact"}


def _interpolate(x: torch.Tensor, size: Sequence[int], mode: str) -> torch.Tensor:
    """Resample channel-first ``x`` ``[C, *spatial]`` to ``size`` with corner-aligned geometry."""
    if mode in _NEAREST:
        src = x if x.dtype in (torch.float32, torch.float64, torch.uint8) else x.float()
        out = F.interpolate(src[None], size=tuple(size), mode="nearest-exact")[0]
        return out.to(x.dtype)
    if mode in _LINEAR:
        linear = {1: "linear", 2: "bilinear", 3: "trilinear"}[x.ndim - 1]
        src = x if x.is_floating_point() else x.float()
        return F.interpolate(src[None], size=tuple(size), mode=linear, align_corners=False)[0]
    raise ValueError(f"unsupported interpolation mode {mode!r} (use 'bilinear' or 'nearest')")


def _index_affine(in_shape: Sequence[int], out_shape: Sequence[int]) -> torch.Tensor:
    """Homogeneous map from output voxel indices to input voxel indices (corner-aligned)."""
    scale = torch.tensor([i / o for i, o in zip(in_shape, out_shape)], dtype=torch.float64)
    t = torch.eye(len(in_shape) + 1, dtype=torch.float64)
    t[:-1, :-1] = torch.diag(scale)
    t[:-1, -1] = 0.5 * scale - 0.5
    return t


def resample_to_spacing(
    img: torch.Tensor, affine: torch.Tensor | np.ndarray, pixdim: Sequence[float], mode: str = "bilinear"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample a channel-first volume to ``pixdim`` along its voxel axes.

    Args:
        img: ``[C, *spatial]`` tensor (1 to 3 spatial dimensions).
        affine: its ``(d+1) x (d+1)`` voxel-to-world affine.
        pixdim: target spacing per spatial axis (mm).
        mode: ``"bilinear"`` (linear in every axis) or ``"nearest"``.

    Returns:
        ``(resampled, new_affine)``.
    """
    affine = torch.as_tensor(affine, dtype=torch.float64)
    spatial = tuple(int(s) for s in img.shape[1:])
    d = len(spatial)
    if affine.shape != (d + 1, d + 1):
        raise ValueError(f"affine of shape {tuple(affine.shape)} does not fit {d} spatial dimensions")
    pixdim = ensure_tuple_rep(pixdim, d)
    current = torch.linalg.norm(affine[:d, :d], dim=0).tolist()
    out_shape = [max(1, int(round(n * s / p))) for n, s, p in zip(spatial, current, pixdim)]
    new_affine = affine @ _index_affine(spatial, out_shape)
    if list(spatial) == out_shape:
        return img, new_affine
    return _interpolate(img, out_shape, mode), new_affine


class ResampleToSpacingd(MapTransform, InvertibleTransform):
    """Dictionary transform: resample ``keys`` to ``pixdim`` quickly and invertibly (see the module docstring).

    Args:
        keys: keys of channel-first ``MetaTensor`` volumes.
        pixdim: target spacing (mm), one value or one per spatial axis.
        mode: ``"bilinear"`` (CT) or ``"nearest"`` (label maps), one or one per key.
        dtype: output dtype for linear modes (nearest keeps the input dtype).
        allow_missing_keys: do not raise for absent keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        pixdim: Sequence[float] | float,
        mode: Sequence[str] | str = "bilinear",
        dtype: torch.dtype = torch.float32,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.pixdim = pixdim
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        self.dtype = dtype

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key, mode in self.key_iterator(d, self.mode):
            img = d[key]
            if not isinstance(img, MetaTensor):
                raise TypeError(f"ResampleToSpacingd needs a MetaTensor with an affine under {key!r}, got {type(img)}")
            orig_shape = [int(s) for s in img.shape[1:]]
            orig_affine = img.affine.to(torch.float64)
            out, new_affine = resample_to_spacing(img.as_tensor(), orig_affine, self.pixdim, mode)
            if mode not in _NEAREST and out.dtype != self.dtype:
                out = out.to(self.dtype)
            result = MetaTensor(out, meta=dict(img.meta), applied_operations=list(img.applied_operations))
            result.affine = new_affine.to(torch.float64)
            self.push_transform(
                result,
                orig_size=orig_shape,
                extra_info={"mode": mode, "orig_affine": orig_affine.tolist()},
            )
            d[key] = result
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            xform = self.pop_transform(img)
            orig_size = [int(s) for s in xform["orig_size"]]
            info = xform["extra_info"]
            out = _interpolate(img.as_tensor(), orig_size, str(info["mode"]))
            result = MetaTensor(out, meta=dict(img.meta), applied_operations=list(img.applied_operations))
            result.affine = torch.tensor(info["orig_affine"], dtype=torch.float64)
            d[key] = result
        return d


ResampleToSpacingD = ResampleToSpacingDict = ResampleToSpacingd
