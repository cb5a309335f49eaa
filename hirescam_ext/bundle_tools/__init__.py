"""Helpers the bundle configs call: the synthetic default dataset, data lists, packaging for the Model Zoo."""

from __future__ import annotations

from hirescam_ext.bundle_tools.dataset import datalist_path, dataset_provenance, dataset_spacing, ensure_dataset

__all__ = ["datalist_path", "dataset_provenance", "dataset_spacing", "ensure_dataset"]
