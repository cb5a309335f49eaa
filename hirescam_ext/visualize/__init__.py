"""Class activation maps: HiResCAM and Grad-CAM (generic fast path and AxialNet closed form), post-processing.

Reference: Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional neural
networks", arXiv:2011.08891.
"""

from __future__ import annotations

from hirescam_ext.visualize.cam_base import (
    CAMBase,
    CAMChunk,
    candidate_target_layers,
    default_split_slices,
    default_target_layer,
    resolve_class_idx,
)
from hirescam_ext.visualize.gradcam import GradCAM
from hirescam_ext.visualize.hirescam import HiResCAM
from hirescam_ext.visualize.postprocess import normalize_cam, upsample_axial_maps, upsample_maps

__all__ = [
    "CAMBase",
    "CAMChunk",
    "GradCAM",
    "HiResCAM",
    "candidate_target_layers",
    "default_split_slices",
    "default_target_layer",
    "normalize_cam",
    "resolve_class_idx",
    "upsample_axial_maps",
    "upsample_maps",
]
