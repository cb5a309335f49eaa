"""Working grid for the organ segmentation: integer block down-sampling of a fine CT and repetition back.

The heavy 3D steps of :func:`hirescam_ext.segmentation.segment_organs` (connected components, distance transforms,
closings) run on a grid whose voxels are about ``working_spacing`` mm wide. A 0.8 mm scan (the preprocessing of
Draelos & Carin, HiResCAM, arXiv:2011.08891) is reduced by whole blocks of voxels (block mean of HU, which models
partial volume) and the label map is repeated back to the scan grid; lung borders are then re-decided on the fine
grid by the HU threshold inside a thin band (see :func:`refine_lung_border`).

Example:
    >>> import numpy as np
    >>> from hirescam_ext.segmentation.grid import block_factors, block_mean, repeat_back
    >>> f = block_factors((0.8, 0.8, 0.8), 2.4)
    >>> f
    (3, 3, 3)
    >>> small = block_mean(np.zeros((10, 9, 9), np.int16), f)
    >>> small.shape, repeat_back(small > 0, f, (10, 9, 9)).shape
    ((4, 3, 3), (10, 9, 9))
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["block_factors", "block_mean", "repeat_back"]


def block_factors(spacing: Sequence[float], working_spacing: float) -> tuple[int, int, int]:
    """Integer factor per axis so that ``spacing * factor`` is at most about ``working_spacing`` mm (>= 1)."""
    factors = (max(1, int(np.floor(working_spacing / float(s) + 1e-6))) for s in spacing)
    return tuple(factors)  # type: ignore[return-value]


def block_mean(volume: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Mean over non-overlapping blocks of ``factors`` voxels (edge-padded to whole blocks), as float32."""
    if all(f == 1 for f in factors):
        return np.asarray(volume, dtype=np.float32)
    pad = [(0, (-n) % f) for n, f in zip(volume.shape, factors)]
    if any(p[1] for p in pad):
        volume = np.pad(volume, pad, mode="edge")
    out = volume
    # reduce one axis at a time as a sum of strided views (numpy reductions over a length-3 axis are slow)
    for axis in (2, 1, 0):
        f = int(factors[axis])
        if f == 1:
            continue
        views = [out[(slice(None),) * axis + (slice(k, None, f),)] for k in range(f)]
        acc = views[0].astype(np.float32)
        for v in views[1:]:
            acc += v
        out = acc
    out = np.asarray(out, dtype=np.float32)
    return out / float(np.prod(factors))


def repeat_back(small: np.ndarray, factors: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour up-sampling by repetition, cropped to ``shape`` (the inverse of :func:`block_mean`)."""
    out = small
    for axis, f in enumerate(factors):
        if f > 1:
            out = np.repeat(out, f, axis=axis)
    return out[: shape[0], : shape[1], : shape[2]]
