"""Data: RAD-ChestCT reader and tables, data lists, cached datasets.

The synthetic benchmark's generator lives in :mod:`hirescam_ext.synthetic`.
"""

from __future__ import annotations

from hirescam_ext.data.datalist import (
    IMAGE_SUFFIXES,
    PATH_KEYS,
    SPLITS,
    accession_of,
    find_scans,
    load_datalist,
    make_datalist,
)
from hirescam_ext.data.dataset import CACHE_MODES, make_dataset
from hirescam_ext.data.failures import collate_skipping_failures, failures_in_batch, is_failed_item
from hirescam_ext.data.radchestct import (
    NPZ_KEY,
    RADCHESTCT_SPACING,
    RadChestCTNpzReader,
    npz_affine,
    read_labels_csv,
    read_location_table,
    write_labels_csv,
    write_location_table,
    write_radchestct_npz,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "PATH_KEYS",
    "SPLITS",
    "accession_of",
    "find_scans",
    "load_datalist",
    "make_datalist",
    "CACHE_MODES",
    "make_dataset",
    "collate_skipping_failures",
    "failures_in_batch",
    "is_failed_item",
    "NPZ_KEY",
    "RADCHESTCT_SPACING",
    "RadChestCTNpzReader",
    "npz_affine",
    "read_labels_csv",
    "read_location_table",
    "write_labels_csv",
    "write_location_table",
    "write_radchestct_npz",
]

