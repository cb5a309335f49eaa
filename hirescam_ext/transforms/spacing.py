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

__all__ = [
    "resample_to_spacing",
    "ResampleToSpacingd",
    "ResampleToSpacingD",
    "ResampleToSpacingDict",
    "CropForSpacingd",
    "CropForSpacingD",
    "CropForSpacingDict",
]

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


class CropForSpacingd(MapTransform, InvertibleTransform):
    """Centre-crop the input to what survives a later centre crop to ``spatial_size`` at ``pixdim`` (plus a margin).

    Resampling a 512 x 512 x 400 scan at 0.7 x 0.7 x 1.0 mm to 0.8 mm makes 448 x 448 x 500 voxels of which the
    final 420 x 420 x 405 crop keeps 71 %: cropping the input first to ``ceil(spatial_size * pixdim / spacing)``
    plus ``margin`` voxels per side skips that work. Axes already small enough are left alone, so the later
    pad/crop still pads them. The final grid differs from resample-then-crop by about one voxel at most (integer
    crop starts) and the affine stays exact; the inverse pads back with zeros (maps and label maps).

    Args:
        keys: volumes sharing one geometry (CT and its label maps).
        pixdim: the spacing the next resampling goes to.
        spatial_size: the final centre-crop size at ``pixdim``.
        margin: extra input voxels kept on each side.
        allow_missing_keys: do not raise for absent keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        pixdim: Sequence[float] | float,
        spatial_size: Sequence[int],
        margin: int = 2,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.pixdim = pixdim
        self.spatial_size = tuple(int(v) for v in spatial_size)
        self.margin = int(margin)

    def _window(self, shape: Sequence[int], affine: torch.Tensor) -> list[tuple[int, int]]:
        d = len(shape)
        pixdim = ensure_tuple_rep(self.pixdim, d)
        current = torch.linalg.norm(affine[:d, :d].to(torch.float64), dim=0).tolist()
        window = []
        for n, size, p, c in zip(shape, ensure_tuple_rep(self.spatial_size, d), pixdim, current):
            keep = int(np.ceil(size * p / c)) + 2 * self.margin
            start = (n - keep) // 2 if keep < n else 0
            window.append((start, min(n, start + keep)))
        return window

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            if not isinstance(img, MetaTensor):
                raise TypeError(f"CropForSpacingd needs a MetaTensor with an affine under {key!r}, got {type(img)}")
            shape = [int(s) for s in img.shape[1:]]
            window = self._window(shape, img.affine)
            region = (slice(None), *(slice(a, b) for a, b in window))
            out = MetaTensor(
                img.as_tensor()[region], meta=dict(img.meta), applied_operations=list(img.applied_operations)
            )
            shift = torch.eye(len(shape) + 1, dtype=torch.float64)
            shift[:-1, -1] = torch.tensor([float(a) for a, _ in window], dtype=torch.float64)
            out.affine = img.affine.to(torch.float64) @ shift
            self.push_transform(out, orig_size=shape, extra_info={"window": [[a, b] for a, b in window]})
            d[key] = out
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            xform = self.pop_transform(img)
            shape = [int(s) for s in xform["orig_size"]]
            window = [(int(a), int(b)) for a, b in xform["extra_info"]["window"]]
            pad: list[int] = []
            for (a, b), n in reversed(list(zip(window, shape))):
                pad += [a, n - b]
            out = MetaTensor(
                F.pad(img.as_tensor(), pad), meta=dict(img.meta), applied_operations=list(img.applied_operations)
            )
            shift = torch.eye(len(shape) + 1, dtype=torch.float64)
            shift[:-1, -1] = -torch.tensor([float(a) for a, _ in window], dtype=torch.float64)
            out.affine = img.affine.to(torch.float64) @ shift
            d[key] = out
        return d


CropForSpacingD = CropForSpacingDict = CropForSpacingd
