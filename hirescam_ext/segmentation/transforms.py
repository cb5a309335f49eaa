"""MONAI dictionary transform that adds the organ map (right lung, heart/mediastinum, left lung) of a CT.

The organ map gives the allowed regions of the mask loss and of OrganIoU (Draelos & Carin, HiResCAM,
arXiv:2011.08891). It is computed from Hounsfield units, so **apply this transform before any intensity scaling**
(``ScaleIntensityRanged`` and friends): a scaled image has no air-density voxels and the result is flagged
``ok=False`` with that reason. Spatial transforms placed before it are fine as long as the MetaTensor's affine
follows them; the voxel size and orientation are read from that affine (any axis-aligned orientation; labels are
returned in the image's own axis order).

Example:
    >>> import numpy as np
    >>> from monai.data import MetaTensor
    >>> from hirescam_ext.segmentation.transforms import SegmentOrgansd
    >>> image = MetaTensor(np.full((1, 16, 16, 8), -1000.0, np.float32), affine=np.diag([3.0, 3.0, 3.0, 1.0]))
    >>> out = SegmentOrgansd(keys="image", output_key="organs", quality_key="organs_quality")({"image": image})
    >>> tuple(out["organs"].shape), out["organs_quality"]["ok"]
    ((1, 16, 16, 8), False)
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from hirescam_ext.segmentation.organs import segment_organs

__all__ = ["SegmentOrgansd", "SegmentOrgansD", "SegmentOrgansDict"]


class SegmentOrgansd(MapTransform):
    """Add ``output_key``: a uint8 organ map ``[1, X, Y, Z]`` (0 bg, 1 right lung, 2 heart/mediastinum, 3 left lung).

    Args:
        keys: image key(s) holding a CT in HU, channel-first ``[1, X, Y, Z]`` (MetaTensor, tensor or array).
        output_key: key(s) for the organ map, one per image key.
        quality_key: optional key(s) receiving :meth:`OrganSegmentation.quality` (``ok``, ``reasons``, ...).
            Left ``None`` by default so that batches collate; failures are always logged.
        spacing: voxel size to use when the image carries no affine (default: read from the affine, else 1 mm).
        allow_missing_keys: skip missing keys instead of raising.
        kwargs: passed to :func:`hirescam_ext.segmentation.segment_organs` (thresholds, working spacing).
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        output_key: str | Sequence[str] = "organs",
        quality_key: str | Sequence[str] | None = None,
        spacing: Sequence[float] | None = None,
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_keys = [output_key] if isinstance(output_key, str) else list(output_key)
        if len(self.output_keys) != len(self.keys):
            raise ValueError(f"need one output_key per key: {len(self.keys)} keys, {len(self.output_keys)} outputs")
        if quality_key is None or isinstance(quality_key, str):
            self.quality_keys = [quality_key] * len(self.keys)
        else:
            self.quality_keys = list(quality_key)
        self.spacing = spacing
        self.kwargs = kwargs

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, out_key, q_key in self.key_iterator(d, self.output_keys, self.quality_keys):
            img = d[key]
            arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
            if arr.ndim != 4 or arr.shape[0] != 1:
                raise ValueError(f"SegmentOrgansd: {key!r} must be channel-first [1, X, Y, Z], got {arr.shape}")
            affine = None
            if isinstance(img, MetaTensor):
                affine = np.asarray(img.affine.detach().cpu().numpy(), dtype=float)
            seg = segment_organs(arr[0], spacing=self.spacing, affine=affine, **self.kwargs)
            organs = torch.from_numpy(seg.organs[None].astype(np.uint8))
            if isinstance(img, MetaTensor):
                meta = dict(img.meta)
                meta["affine"] = img.affine.clone()
                out = MetaTensor(organs, meta=meta)
            else:
                out = organs
            d[out_key] = out
            if q_key is not None:
                d[q_key] = seg.quality()
        return d


SegmentOrgansD = SegmentOrgansDict = SegmentOrgansd
