"""Ignite handlers: OrganIoU and multi-label AUROC metrics, loss-component logging (HiResCAM, arXiv:2011.08891),
per-scan progress, a training run's learning curve."""

from __future__ import annotations

from hirescam_ext.handlers.auroc import MultiLabelAUROCHandler, default_auroc_transform
from hirescam_ext.handlers.history import TrainingHistory, read_history
from hirescam_ext.handlers.loss_components import LossComponentsHandler
from hirescam_ext.handlers.organ_iou import OrganIoUHandler, default_organ_iou_transform
from hirescam_ext.handlers.progress import ScanProgressBar, scan_of_output

__all__ = [
    "OrganIoUHandler",
    "MultiLabelAUROCHandler",
    "LossComponentsHandler",
    "ScanProgressBar",
    "TrainingHistory",
    "read_history",
    "default_organ_iou_transform",
    "default_auroc_transform",
    "scan_of_output",
]
