"""The 80-label RAD-ChestCT abnormality set and the 51 locations, shipped as package data.

The label table gives, for every label, its organ group, the allowed region used to build G_true
(``heart_mediastinum`` or ``lungs_by_side``) and the two concept groupings of the HiResCAM paper
(focal/diffuse, biological/intervention).

Example:
    >>> from hirescam_ext.labels import LABEL_NAMES, label_table
    >>> len(LABEL_NAMES)
    80
    >>> label_table()["lung_nodule"]["allowed_region"]
    'lungs_by_side'
"""

from __future__ import annotations

import csv
from functools import lru_cache
from importlib import resources

__all__ = [
    "LABEL_NAMES",
    "LOCATION_NAMES",
    "CONCEPT_GROUPS",
    "ORGAN_LABELS",
    "label_table",
    "load_label_names",
    "load_location_names",
    "labels_in_group",
    "label_prevalence",
]

#: organ label map encoding used everywhere (as the original code): 0 background.
ORGAN_LABELS = {"right_lung": 1, "heart_mediastinum": 2, "left_lung": 3}

#: concept-group columns of the label table and their values.
CONCEPT_GROUPS = {
    "focal_or_diffuse": ("focal", "diffuse"),
    "biological_or_intervention": ("biological", "intervention"),
}


def _resource_text(name: str) -> str:
    return resources.files("hirescam_ext").joinpath("resources", name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def label_table() -> dict[str, dict[str, str]]:
    """Return ``{label: {column: value}}`` for the 80 labels, in file order."""
    rows = csv.DictReader(_resource_text("radchestct_80_labels.csv").splitlines())
    return {row["label"]: dict(row) for row in rows}


def load_label_names() -> list[str]:
    """The 80 label names in the canonical order (the network's output channels)."""
    return list(label_table())


def load_location_names() -> list[str]:
    """The 51 location names in the canonical column order of location tables."""
    lines = _resource_text("locations.txt").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def labels_in_group(column: str, value: str) -> list[str]:
    """Labels whose ``column`` (for example ``focal_or_diffuse``) equals ``value`` (for example ``focal``)."""
    table = label_table()
    if table and column not in next(iter(table.values())):
        raise KeyError(f"unknown label-table column {column!r}")
    return [name for name, row in table.items() if row[column] == value]


def label_prevalence(items: list[dict], num_labels: int | None = None) -> list[float]:
    """Fraction of data-list items positive for each label (the ``label`` vectors' mean).

    Used to start a classifier's output bias at the log prior odds (:func:`hirescam_ext.networks.init_output_bias`).

    Raises:
        ValueError: no items, or label vectors of different lengths.

    Example:
        >>> label_prevalence([{"label": [1, 0]}, {"label": [1, 1]}])
        [1.0, 0.5]
    """
    if not items:
        raise ValueError("no data-list items to compute label prevalence from")
    vectors = [[float(v) for v in item["label"]] for item in items]
    n = num_labels if num_labels is not None else len(vectors[0])
    if any(len(v) != n for v in vectors):
        raise ValueError(f"label vectors must all have {n} values")
    return [sum(v[i] for v in vectors) / len(vectors) for i in range(n)]


LABEL_NAMES: list[str] = load_label_names()
LOCATION_NAMES: list[str] = load_location_names()
