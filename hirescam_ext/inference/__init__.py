"""Inference outputs a person can look at: input discovery, fault-tolerant loading, maps, overlays and tables."""

from __future__ import annotations

from hirescam_ext.inference.dataset import SkipBadItems, error_message
from hirescam_ext.inference.figures import axial_display, save_overlay_png, save_slice_score_heatmap
from hirescam_ext.inference.inputs import VOLUME_SUFFIXES, find_ct_inputs, is_dicom_file, scan_name, unique_scan_names
from hirescam_ext.inference.writer import DONE_MARKER, ExplanationWriter, pending_inputs

__all__ = [
    "DONE_MARKER",
    "ExplanationWriter",
    "SkipBadItems",
    "VOLUME_SUFFIXES",
    "axial_display",
    "error_message",
    "find_ct_inputs",
    "is_dicom_file",
    "pending_inputs",
    "save_overlay_png",
    "save_slice_score_heatmap",
    "scan_name",
    "unique_scan_names",
]
