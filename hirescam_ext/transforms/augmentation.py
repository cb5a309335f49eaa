"""The HiResCAM paper's training augmentation: a random flip, then a random axial-plane rot90, on every key alike.

Draelos & Carin (HiResCAM, arXiv:2011.08891) augment each training CT with probability 0.5 by a flip along one
randomly chosen axis and then, with probability 0.5, by a rotation of the axial plane by 90, 180 or 270 degrees;
the allowed-region masks G_true are flipped/rotated exactly like the image. :class:`RandFlipRot90d` draws one
outcome per call and applies it to every key: the image ``[1, X, Y, Z]``, the organ map ``[1, X, Y, Z]`` and the
allowed regions ``[M, D1, D2, H]`` (same spatial axis order, coarser grid), so they stay aligned. The axial plane
is spatial axes ``(0, 1)``; rotating it needs square in-plane sizes (``X == Y``, ``D1 == D2``).

The transform is invertible for ``MetaTensor`` inputs (the affine is updated and the draw is recorded), so
``Invertd``/``Compose.inverse`` can undo it.

Every outcome equals MONAI's ``RandAxisFlipd(prob=0.5)`` followed by ``RandRotate90d(prob=0.5, max_k=3,
spatial_axes=(0, 1))`` (same voxels, same affine; ``tests/transforms/test_augmentation.py`` checks all 16 draws).
This class stays because that pair lacks three things the bundle uses: ``set_draw`` (a fixed outcome for tests and
figures), one invertible record per draw instead of two, and the square-plane check (MONAI's rot90 of a non-square
plane silently changes the shape, and the batch then fails to collate far from the cause).

Example:
    >>> aug = RandFlipRot90d(keys=("image", "organs", "regions"))
    >>> aug.set_random_state(seed=0)  # doctest: +SKIP
    >>> out = aug({"image": image, "organs": organs, "regions": regions})  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform, RandomizableTransform

__all__ = ["flip_rot90", "RandFlipRot90d", "RandFlipRot90D", "RandFlipRot90Dict"]

#: spatial axes of the axial plane (X, Y) in channel-first [C, X, Y, Z] tensors.
AXIAL_PLANE = (0, 1)


def _index_map(shape: tuple[int, ...], flip_axis: int | None, k: int) -> torch.Tensor:
    """Homogeneous matrix mapping output voxel indices to input voxel indices for flip-then-rot90."""
    d = len(shape)
    total = torch.eye(d + 1, dtype=torch.float64)
    if flip_axis is not None:
        f = torch.eye(d + 1, dtype=torch.float64)
        f[flip_axis, flip_axis] = -1.0
        f[flip_axis, d] = shape[flip_axis] - 1
        total = total @ f
    a, b = AXIAL_PLANE
    for _ in range(k % 4):
        # torch.rot90 by one step: out[i, j] = in[j, n_b - 1 - i] over axes (a, b).
        r = torch.eye(d + 1, dtype=torch.float64)
        r[a, a], r[a, b], r[b, a], r[b, b] = 0.0, 1.0, -1.0, 0.0
        r[b, d] = shape[b] - 1
        total = total @ r
    return total


def flip_rot90(x: torch.Tensor, flip_axis: int | None, k: int) -> torch.Tensor:
    """Flip channel-first ``x`` along spatial ``flip_axis`` (``None``: no flip), then rot90 the axial plane k times."""
    out = x
    if flip_axis is not None:
        out = torch.flip(out, dims=(flip_axis + 1,))
    if k % 4:
        out = torch.rot90(out, k % 4, dims=(AXIAL_PLANE[0] + 1, AXIAL_PLANE[1] + 1))
    return out


class RandFlipRot90d(RandomizableTransform, MapTransform, InvertibleTransform):
    """Paper augmentation: p=``flip_prob`` flip along one random spatial axis, then p=``rot_prob`` axial rot90.

    One draw per call is applied identically to all ``keys`` (channel-first tensors with 3 spatial axes in the
    image's order, of any grid size).

    Args:
        keys: keys to transform together (image, organ map, allowed regions...).
        flip_prob: probability of the flip (paper: 0.5).
        rot_prob: probability of the rotation (paper: 0.5); ``k`` is uniform in {1, 2, 3}.
        allow_missing_keys: do not raise for absent keys.

    Raises:
        ValueError: when ``rot_prob > 0`` and a key's axial plane is not square.
    """

    def __init__(
        self, keys: KeysCollection, flip_prob: float = 0.5, rot_prob: float = 0.5, allow_missing_keys: bool = False
    ):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob=1.0)
        for name, p in (("flip_prob", flip_prob), ("rot_prob", rot_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {p}")
        self.flip_prob = float(flip_prob)
        self.rot_prob = float(rot_prob)
        self._flip_axis: int | None = None
        self._k = 0

    def randomize(self, data: object = None) -> None:
        do_flip = self.R.rand() < self.flip_prob
        axis = int(self.R.randint(3))
        do_rot = self.R.rand() < self.rot_prob
        k = int(self.R.randint(1, 4))
        self._flip_axis = axis if do_flip else None
        self._k = k if do_rot else 0

    def set_draw(self, flip_axis: int | None, k: int) -> None:
        """Fix the outcome of the next call (tests, visual checks); it is overwritten by the following draw."""
        self._flip_axis, self._k = flip_axis, int(k) % 4

    def _check(self, key: Hashable, x: torch.Tensor | np.ndarray) -> None:
        if x.ndim != 4:
            raise ValueError(f"RandFlipRot90d: {key!r} must be channel-first with 3 spatial axes, got {tuple(x.shape)}")
        if self.rot_prob > 0 and x.shape[1 + AXIAL_PLANE[0]] != x.shape[1 + AXIAL_PLANE[1]]:
            raise ValueError(
                f"RandFlipRot90d: rot90 of the axial plane needs square in-plane sizes, {key!r} has spatial shape "
                f"{tuple(x.shape[1:])}; pad/crop to a square first or set rot_prob=0"
            )

    def __call__(self, data: Mapping[Hashable, torch.Tensor], randomize: bool = True) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        if randomize:
            self.randomize()
        for key in self.key_iterator(d):
            x = d[key]
            self._check(key, x)
            d[key] = self._apply(x, self._flip_axis, self._k)
        return d

    def _apply(self, x: torch.Tensor | np.ndarray, flip_axis: int | None, k: int) -> torch.Tensor:
        if isinstance(x, np.ndarray):
            x = torch.as_tensor(x)
        if not isinstance(x, MetaTensor):
            return flip_rot90(x, flip_axis, k)
        shape = tuple(int(s) for s in x.shape[1:])
        out = MetaTensor(
            flip_rot90(x.as_tensor(), flip_axis, k), meta=dict(x.meta), applied_operations=list(x.applied_operations)
        )
        out.affine = x.affine.to(torch.float64) @ _index_map(shape, flip_axis, k)
        self.push_transform(out, orig_size=list(shape), extra_info={"flip_axis": flip_axis, "k": k})
        return out

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            x = d[key]
            xform = self.pop_transform(x)
            flip_axis, k = xform["extra_info"]["flip_axis"], int(xform["extra_info"]["k"])
            orig_shape = tuple(int(s) for s in xform["orig_size"])
            y = x.as_tensor()
            if k % 4:
                y = torch.rot90(y, -(k % 4), dims=(AXIAL_PLANE[0] + 1, AXIAL_PLANE[1] + 1))
            if flip_axis is not None:
                y = torch.flip(y, dims=(int(flip_axis) + 1,))
            out = MetaTensor(y, meta=dict(x.meta), applied_operations=list(x.applied_operations))
            out.affine = x.affine.to(torch.float64) @ torch.linalg.inv(_index_map(orig_shape, flip_axis, k))
            d[key] = out
        return d


RandFlipRot90D = RandFlipRot90Dict = RandFlipRot90d
