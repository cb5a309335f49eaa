"""MONAI dictionary transforms of the HiResCAM paper's CT pipeline: preprocessing, resampling, augmentation.

See :func:`ct_preprocessing` (Draelos & Carin, HiResCAM, arXiv:2011.08891) for the full deterministic chain and
:class:`RandFlipRot90d` for the training augmentation.
"""

from __future__ import annotations

from hirescam_ext.transforms.augmentation import RandFlipRot90d, RandFlipRot90D, RandFlipRot90Dict, flip_rot90
from hirescam_ext.transforms.intensity import HUWindowd, HUWindowD, HUWindowDict, hu_window
from hirescam_ext.transforms.loading import ContiguousReader, default_ct_readers, to_c_order
from hirescam_ext.transforms.preprocessing import (
    PAPER_CENTER,
    PAPER_HU_RANGE,
    PAPER_SPACING,
    PAPER_SPATIAL_SIZE,
    ct_preprocessing,
    invert_to_original,
    prepare_hu_volume,
    prepare_volumes,
)
from hirescam_ext.transforms.spacing import (
    CropForSpacingd,
    CropForSpacingD,
    CropForSpacingDict,
    ResampleToSpacingd,
    ResampleToSpacingD,
    ResampleToSpacingDict,
    resample_to_spacing,
)

__all__ = [
    "PAPER_CENTER",
    "PAPER_HU_RANGE",
    "PAPER_SPACING",
    "PAPER_SPATIAL_SIZE",
    "ct_preprocessing",
    "invert_to_original",
    "prepare_hu_volume",
    "prepare_volumes",
    "ContiguousReader",
    "default_ct_readers",
    "to_c_order",
    "RandFlipRot90d",
    "RandFlipRot90D",
    "RandFlipRot90Dict",
    "flip_rot90",
    "HUWindowd",
    "HUWindowD",
    "HUWindowDict",
    "hu_window",
    "CropForSpacingd",
    "CropForSpacingD",
    "CropForSpacingDict",
    "ResampleToSpacingd",
    "ResampleToSpacingD",
    "ResampleToSpacingDict",
    "resample_to_spacing",
]
