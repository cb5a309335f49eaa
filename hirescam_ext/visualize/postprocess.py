"""Post-processing of class activation maps: whole-volume normalization and upsampling.

The HiResCAM paper (Draelos & Carin, arXiv:2011.08891) post-processes each explanation map over the whole volume at
once: ReLU, subtract the minimum, divide by the maximum when it is non-zero (no sigmoid). Maps computed on the
AxialNet attention grid ``[B, M, H, D1, D2]`` (``H`` triplets of axial slices, ``D1`` along X, ``D2`` along Y) are
upsampled trilinearly to the input volume ``[X, Y, Z]`` for figures.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["normalize_cam", "upsample_axial_maps", "upsample_maps"]

_LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def normalize_cam(
    maps: torch.Tensor, spatial_dims: int | None = None, inplace: bool = False, known_finite: bool = False
) -> torch.Tensor:
    """Normalize explanation maps to ``[0, 1]`` over the whole volume of each (sample, class) pair.

    Steps (paper, post-processing): ReLU, subtract the minimum, divide by the maximum when it is non-zero. The
    minimum and maximum are taken over all ``spatial_dims`` trailing axes together (for AxialNet maps
    ``[B, M, H, D1, D2]`` that is all slices at once, never slice by slice). An all-zero map stays all zero; an
    infinite cell (fp16 overflow under AMP) counts as the largest finite value, so the output stays finite.

    Args:
        maps: ``[B, M, *spatial]`` maps (any floating dtype).
        spatial_dims: number of trailing spatial axes; default ``maps.ndim - 2``.
        inplace: overwrite ``maps`` (a contiguous floating tensor) instead of allocating the result; saves one
            map-sized buffer when normalizing large upsampled maps. Same values either way.
        known_finite: the caller knows ``maps`` holds no infinity (e.g. maps linearly interpolated from finite ones),
            so the check for it, a pass over the data and a device synchronization, is skipped.

    Returns:
        A tensor of the same shape and dtype, values in ``[0, 1]`` (``maps`` itself when ``inplace``).

    Example:
        >>> m = torch.tensor([[[[0.0, 2.0], [-1.0, 4.0]]]])  # [1, 1, 2, 2]
        >>> normalize_cam(m).flatten().tolist()
        [0.0, 0.5, 0.0, 1.0]
    """
    if not torch.is_floating_point(maps):
        maps = maps.float()
    if spatial_dims is None:
        spatial_dims = maps.ndim - 2
    if spatial_dims < 1 or spatial_dims > maps.ndim:
        raise ValueError(f"normalize_cam: spatial_dims={spatial_dims} is invalid for maps of shape {tuple(maps.shape)}")
    lead = maps.shape[: maps.ndim - spatial_dims]
    flat = maps.reshape(*lead, -1)
    # an overflowed cell (fp16 AMP) is the map's maximum: clamp to the range
    if not known_finite and bool(torch.isinf(flat).any()):
        info = torch.finfo(flat.dtype)
        flat = torch.nan_to_num(flat, nan=float("nan"), posinf=info.max, neginf=info.min)
    # min and max after the ReLU are the raw ones clamped at 0, so one pass over the data gives both
    low, high = torch.aminmax(flat, dim=-1, keepdim=True)
    low, high = low.clamp_min(0), high.clamp_min(0)
    span = high - low
    span = torch.where(span > 0, span, torch.ones_like(span))  # a constant map becomes all zero, never NaN
    # relu(x) - low == max(x, low) - low, because low = max(min(x), 0)
    if inplace and flat.data_ptr() == maps.data_ptr() and flat.is_contiguous():
        out = torch.maximum(flat, low, out=flat)
    else:
        out = torch.maximum(flat, low)
    out.sub_(low).div_(span)
    return out.reshape(maps.shape)


def upsample_maps(maps: torch.Tensor, spatial_size: Sequence[int], align_corners: bool = False) -> torch.Tensor:
    """Resize ``[B, M, *spatial]`` maps to ``spatial_size`` with (bi/tri)linear interpolation.

    Args:
        maps: ``[B, M, *spatial]`` maps with 1 to 3 spatial axes, in the same axis order as the input image.
        spatial_size: target spatial size (the input image's spatial shape).
        align_corners: passed to :func:`torch.nn.functional.interpolate`.

    Returns:
        ``[B, M, *spatial_size]``.

    Example:
        >>> upsample_maps(torch.rand(2, 3, 4, 4), (16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """
    spatial_size = tuple(int(s) for s in spatial_size)
    nsp = maps.ndim - 2
    if nsp not in _LINEAR_MODES or len(spatial_size) != nsp:
        raise ValueError(
            f"upsample_maps: maps of shape {tuple(maps.shape)} have {nsp} spatial axes but spatial_size is "
            f"{spatial_size}; need 1 to 3 axes of matching length"
        )
    if not torch.is_floating_point(maps):
        maps = maps.float()
    if tuple(maps.shape[2:]) == spatial_size:
        return maps
    return F.interpolate(maps, size=spatial_size, mode=_LINEAR_MODES[nsp], align_corners=align_corners)


def upsample_axial_maps(maps: torch.Tensor, volume_shape: Sequence[int], align_corners: bool = False) -> torch.Tensor:
    """Upsample AxialNet-grid maps ``[B, M, H, D1, D2]`` to the input volume ``[B, M, X, Y, Z]``.

    The slice axis ``H`` (triplets along Z) is moved last, ``[B, M, D1, D2, H]``, to match the image axis order
    ``[X, Y, Z]``, then the maps are resized trilinearly.

    Args:
        maps: ``[B, M, H, D1, D2]`` maps on the attention grid.
        volume_shape: ``(X, Y, Z)``, the spatial shape of the input volume.
        align_corners: passed to :func:`torch.nn.functional.interpolate`.

    Returns:
        ``[B, M, X, Y, Z]``.

    Example:
        >>> upsample_axial_maps(torch.rand(1, 80, 48, 6, 6), (128, 128, 144)).shape
        torch.Size([1, 80, 128, 128, 144])
    """
    if maps.ndim != 5:
        raise ValueError(f"upsample_axial_maps: expected maps [B, M, H, D1, D2], got shape {tuple(maps.shape)}")
    if len(volume_shape) != 3:
        raise ValueError(f"upsample_axial_maps: expected volume_shape (X, Y, Z), got {tuple(volume_shape)}")
    return upsample_maps(maps.permute(0, 1, 3, 4, 2), volume_shape, align_corners=align_corners)
