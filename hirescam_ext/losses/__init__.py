"""Losses: the HiResCAM mask loss and the combined classification + mask loss (Draelos & Carin, arXiv:2011.08891)."""

from __future__ import annotations

from hirescam_ext.losses.mask_loss import (
    MASK_PENALTIES,
    MASK_POOLS,
    ClassificationMaskLoss,
    MaskLoss,
    split_prediction,
    split_target,
)

__all__ = ["MASK_PENALTIES", "MASK_POOLS", "MaskLoss", "ClassificationMaskLoss", "split_prediction", "split_target"]
