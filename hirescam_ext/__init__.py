"""hirescam-ext: HiResCAM, AxialNet, the mask loss and OrganIoU for explainable chest CT, as MONAI components.

References:
    R. L. Draelos and L. Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional neural
    networks", arXiv:2011.08891; "Explainable multiple abnormality classification of chest CT volumes", Artificial
    Intelligence in Medicine, 2022.

Every public name is importable from ``hirescam_ext`` directly. Names are resolved lazily (PEP 562), so
``import hirescam_ext`` stays fast and the heavy optional parts (spaCy for the report labeler, ITK for DICOM) load
only when used.

Example:
    >>> import torch
    >>> from hirescam_ext import AxialNet, HiResCAM
    >>> net = AxialNet(n_classes=4, spatial_size=(64, 64), trunk="small", custom_conv_padding=1)
    >>> maps = HiResCAM(net)(torch.rand(1, 1, 64, 64, 12), upsample=False)
    >>> tuple(maps.shape)  # [B, M, H, D1, D2]
    (1, 4, 4, 2, 2)
"""

from __future__ import annotations

import importlib
from typing import Any

from hirescam_ext.labels import LABEL_NAMES, LOCATION_NAMES, ORGAN_LABELS, label_table
from hirescam_ext.version import __version__

#: public name -> module that defines it
_LAZY: dict[str, str] = {}


def _register(module: str, *names: str) -> None:
    for name in names:
        _LAZY[name] = module


_register(
    "hirescam_ext.networks",
    "AxialNet",
    "AxialNetOutput",
    "CTNet",
    "BodyConv",
    "ThreeDConv",
    "Plain3DCNN",
    "init_output_bias",
    "build_trunk",
    "load_torchvision_resnet18_weights",
)
_register("hirescam_ext.visualize", "HiResCAM", "GradCAM", "normalize_cam", "upsample_axial_maps", "upsample_maps")
_register("hirescam_ext.losses", "MaskLoss", "ClassificationMaskLoss")
_register(
    "hirescam_ext.metrics",
    "OrganIoU",
    "OrganIoUResult",
    "THRESHOLDS",
    "compute_organ_iou",
    "select_best_thresholds",
    "save_thresholds",
    "load_thresholds",
    "MultiLabelAUROC",
    "compute_multilabel_auroc",
)
_register("hirescam_ext.handlers", "OrganIoUHandler", "MultiLabelAUROCHandler", "LossComponentsHandler")
_register(
    "hirescam_ext.engines",
    "ExplanationEvaluator",
    "PrepareBatchWithRegions",
    "TrainingCheckpointer",
    "NonFiniteLossGuard",
    "WithAttention",
)
_register(
    "hirescam_ext.transforms",
    "ct_preprocessing",
    "invert_to_original",
    "RandFlipRot90d",
    "HUWindowd",
    "ResampleToSpacingd",
    "CropForSpacingd",
    "default_ct_readers",
)
_register("hirescam_ext.regions", "AllowedRegionsd", "ToAttentionLayoutd", "allowed_regions", "attention_grid_size")
_register(
    "hirescam_ext.data",
    "make_dataset",
    "load_datalist",
    "make_datalist",
    "read_labels_csv",
    "read_location_table",
    "RadChestCTNpzReader",
)
_register(
    "hirescam_ext.synthetic", "generate_dataset", "generate_case", "SyntheticCase", "SynthConfig", "GENERATOR_VERSION"
)
_register("hirescam_ext.segmentation", "segment_organs", "SegmentOrgansd", "OrganSegmentation")
_register("hirescam_ext.labeling", "ReportLabeler", "LabelResult", "load_vocabulary")
_register("hirescam_ext.utils.errors", "InputError")
_register("hirescam_ext.utils.ct_checks", "LoadCTd", "load_ct", "check_ct_array", "check_dicom_series", "check_ct_source")
_register("hirescam_ext.utils.io", "atomic_write", "ensure_writable_dir")
_register("hirescam_ext.utils.memory", "retain_freed_memory")

__all__ = ["__version__", "LABEL_NAMES", "LOCATION_NAMES", "ORGAN_LABELS", "label_table", *sorted(_LAZY)]


#: subpackages reachable as attributes (``hirescam_ext.transforms.ct_preprocessing`` in bundle configs)
_SUBPACKAGES = {
    "benchmark",
    "bundle_tools",
    "cli",
    "data",
    "engines",
    "evaluation",
    "handlers",
    "inference",
    "labeling",
    "labels",
    "losses",
    "metrics",
    "networks",
    "regions",
    "reproduce",
    "segmentation",
    "synthetic",
    "transforms",
    "utils",
    "visualize",
}


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"hirescam_ext.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hirescam_ext' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBPACKAGES)
