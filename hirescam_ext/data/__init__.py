"""Data: RAD-ChestCT reader and tables, data lists, cached datasets (and the synthetic benchmark when present).

The synthetic-benchmark names (``generate_dataset``, ``generate_case``) are resolved lazily from
:mod:`hirescam_ext.data.synthetic` so importing this package stays light and free of import cycles.
"""

from __future__ import annotations

import importlib
from typing import Any

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

_LAZY = {"generate_dataset": "hirescam_ext.data.synthetic", "generate_case": "hirescam_ext.data.synthetic"}

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
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
