"""Metrics: OrganIoU with per-abnormality threshold selection (Draelos & Carin, arXiv:2011.08891) and AUROC."""

from __future__ import annotations

from hirescam_ext.metrics.auroc import (
    AUROCResult,
    MultiLabelAUROC,
    average_ranks,
    binary_auroc,
    compute_multilabel_auroc,
)
from hirescam_ext.metrics.organ_iou import (
    FALLBACK_THRESHOLD,
    THRESHOLDS,
    OrganIoU,
    OrganIoUResult,
    compute_organ_iou,
    load_thresholds,
    save_thresholds,
    select_best_thresholds,
)

__all__ = [
    "THRESHOLDS",
    "FALLBACK_THRESHOLD",
    "OrganIoU",
    "OrganIoUResult",
    "compute_organ_iou",
    "select_best_thresholds",
    "save_thresholds",
    "load_thresholds",
    "AUROCResult",
    "MultiLabelAUROC",
    "average_ranks",
    "binary_auroc",
    "compute_multilabel_auroc",
]
