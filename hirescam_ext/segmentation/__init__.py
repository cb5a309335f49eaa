"""Unsupervised organ segmentation of chest CT (right lung, left lung, heart/mediastinum) from HU alone.

See :func:`segment_organs` and docs/SEGMENTATION.md. Command line: ``hirescam segment`` (:mod:`.cli`).
"""

from __future__ import annotations

from hirescam_ext.segmentation.organs import (
    HEART_MEDIASTINUM,
    LEFT_LUNG,
    RIGHT_LUNG,
    OrganSegmentation,
    segment_organs,
)

__all__ = ["OrganSegmentation", "segment_organs", "SegmentOrgansd", "RIGHT_LUNG", "HEART_MEDIASTINUM", "LEFT_LUNG"]


def __getattr__(name: str):
    # the MONAI transform imports torch/MONAI: load it only when asked for
    if name in ("SegmentOrgansd", "SegmentOrgansD", "SegmentOrgansDict"):
        from hirescam_ext.segmentation import transforms

        return getattr(transforms, name)
    raise AttributeError(name)
