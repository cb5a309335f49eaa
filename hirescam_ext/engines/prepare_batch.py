"""Batch preparation for training with the mask loss.

MONAI's ``SupervisedTrainer`` calls ``loss_function(pred, targets)`` only. The mask loss needs the allowed regions
G_true next to the labels, so this prepare-batch packs them into a dictionary target that
:class:`hirescam_ext.losses.ClassificationMaskLoss` understands.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.engines.utils import PrepareBatch
from monai.utils import CommonKeys

__all__ = ["PrepareBatchWithRegions"]


class PrepareBatchWithRegions(PrepareBatch):
    """Return ``(image, target)`` where ``target`` is ``{"label": ..., "regions": ...}`` when regions are present.

    Args:
        image_key: batch key of the network input.
        label_key: batch key of the ``[B, M]`` label vector.
        regions_key: batch key of the allowed regions ``[B, M, H, D1, D2]``; when absent from a batch the target is
            the label tensor alone (classification loss only).
        require_label: raise when a batch has no label; ``False`` (inference on unlabeled scans) gives a ``None``
            target instead.
        value_range: ``(lo, hi)`` of the float image. An image batch that arrives as int16 or uint8 (the
            ``"memmap"`` cache with ``output="stored"``) is copied to the device as it is, at 2 or 1 bytes per voxel,
            and converted there with :func:`hirescam_ext.data.dataset.dequantize`; a float batch is left as it is.

    Example:
        >>> prepare = PrepareBatchWithRegions()
        >>> batch = {"image": torch.zeros(1, 1, 8, 8, 6), "label": torch.zeros(1, 80)}
        >>> image, target = prepare(batch)
        >>> target.shape
        torch.Size([1, 80])
    """

    def __init__(
        self,
        image_key: str = CommonKeys.IMAGE,
        label_key: str = CommonKeys.LABEL,
        regions_key: str = "regions",
        require_label: bool = True,
        value_range: Sequence[float] | None = None,
    ) -> None:
        self.require_label = require_label
        self.value_range = None if value_range is None else (float(value_range[0]), float(value_range[1]))
        self.image_key = image_key
        self.label_key = label_key
        self.regions_key = regions_key

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | dict[str, torch.Tensor] | None]:
        def to(t: torch.Tensor) -> torch.Tensor:
            return torch.as_tensor(t).to(device=device, non_blocking=non_blocking, **kwargs)

        required = (self.image_key, self.label_key) if self.require_label else (self.image_key,)
        for key in required:
            if key not in batchdata:
                raise KeyError(f"batch has no {key!r} entry (keys: {sorted(batchdata)})")
        image = to(batchdata[self.image_key])
        if image.dtype in (torch.int16, torch.uint8):
            if self.value_range is None:
                raise ValueError(
                    f"the {self.image_key!r} batch is {image.dtype} (a quantized cache): give PrepareBatchWithRegions "
                    "the value_range to convert it"
                )
            from hirescam_ext.data.dataset import dequantize

            image = dequantize(image, self.value_range)
        if batchdata.get(self.label_key) is None:
            return image, None
        label = to(batchdata[self.label_key]).float()
        if self.regions_key in batchdata and batchdata[self.regions_key] is not None:
            return image, {"label": label, "regions": to(batchdata[self.regions_key]).float()}
        return image, label
