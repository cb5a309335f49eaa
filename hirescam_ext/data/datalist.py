"""Data-list JSON (MONAI ``load_decathlon_datalist`` style): reading with checks, and writing from a user folder.

A data list holds one list of items per split (``training``, ``validation``, ``test``, ``test_shifted``); each
item has ``image`` (a CT file or DICOM series folder, relative to the JSON's folder), ``label`` (the 80 0/1
labels of :data:`hirescam_ext.labels.LABEL_NAMES`), ``accession`` and optionally ``organs``, ``locations``,
``report``, ``lesions`` (docs/ARCHITECTURE.md). The same list feeds files MONAI reads natively (DICOM, NIfTI,
NRRD) and RAD-ChestCT ``.npz`` volumes.

Example:
    >>> make_datalist("my_cts/", "labels.csv", "my_cts/datalist.json", organs_dir="my_cts/organs")  # doctest: +SKIP
    >>> train = load_datalist("my_cts/datalist.json", "training")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import numpy as np
from monai.data import load_decathlon_datalist

from hirescam_ext.data.radchestct import read_labels_csv
from hirescam_ext.labels import LABEL_NAMES
from hirescam_ext.utils.errors import InputError
from hirescam_ext.utils.io import write_json_atomic

__all__ = [
    "SPLITS",
    "PATH_KEYS",
    "IMAGE_SUFFIXES",
    "accession_of",
    "find_scans",
    "load_datalist",
    "make_datalist",
]

SPLITS = ("training", "validation", "test", "test_shifted")
#: item keys holding paths (resolved against the JSON's folder).
PATH_KEYS = ("image", "organs", "locations", "report", "lesions")
#: CT file suffixes recognised in a user folder (DICOM series are sub-folders).
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".npz")
_SIDE_SUFFIXES = {"organs": IMAGE_SUFFIXES, "lesions": IMAGE_SUFFIXES, "locations": (".csv",), "report": (".txt",)}


def accession_of(path: str | os.PathLike) -> str:
    """Accession of a CT file or DICOM folder: its name without a known suffix (``a/trn01.nii.gz`` -> ``trn01``)."""
    name = os.path.basename(os.path.normpath(os.fspath(path)))
    for suffix in IMAGE_SUFFIXES + (".csv", ".txt"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _is_dicom_folder(folder: str) -> bool:
    try:
        names = [n for n in os.listdir(folder) if not n.startswith(".")]
    except OSError:
        return False
    files = [n for n in names if os.path.isfile(os.path.join(folder, n))]
    return bool(files) and all(n.lower().endswith(".dcm") or "." not in n for n in files)


def find_scans(folder: str | os.PathLike) -> dict[str, str]:
    """``{accession: path}`` of the CTs directly in ``folder`` (files with a CT suffix, DICOM series sub-folders)."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise InputError(folder, "not a folder of CT scans")
    found: dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith("."):
            continue
        is_ct = os.path.isfile(path) and name.lower().endswith(IMAGE_SUFFIXES)
        if is_ct or (os.path.isdir(path) and _is_dicom_folder(path)):
            acc = accession_of(name)
            if acc in found:
                raise InputError(folder, f"two scans share the accession {acc!r}: {found[acc]} and {path}")
            found[acc] = path
    return found


def _check_item(path: str, split: str, i: int, item: dict, num_labels: int) -> None:
    where = f"{split}[{i}]"
    if "image" not in item:
        raise InputError(path, f"{where} has no 'image'")
    if "label" in item:
        label = item["label"]
        if not isinstance(label, (list, tuple)) or len(label) != num_labels:
            size = len(label) if isinstance(label, (list, tuple)) else type(label).__name__
            raise InputError(path, f"{where} 'label' must be a list of {num_labels} values 0/1, got {size}")
        if any(v not in (0, 1) for v in label):
            raise InputError(path, f"{where} 'label' holds values other than 0/1")


def load_datalist(
    path: str | os.PathLike,
    split: str = "training",
    base_dir: str | os.PathLike | None = None,
    num_labels: int = len(LABEL_NAMES),
) -> list[dict]:
    """Load one split of a data-list JSON, with its path keys resolved against ``base_dir`` (default: its folder).

    Wraps ``monai.data.load_decathlon_datalist`` and checks each item (``image`` present, ``label`` of
    ``num_labels`` 0/1 values).

    Raises:
        InputError: naming the file when it is missing, not JSON, lacks the split, or holds a bad item.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except OSError as exc:
        raise InputError(path, f"cannot read the data list ({exc.strerror or exc})") from exc
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc})") from exc
    if not isinstance(content, dict) or split not in content:
        available = sorted(k for k, v in content.items() if isinstance(v, list)) if isinstance(content, dict) else []
        raise InputError(path, f"no split {split!r} in the data list (available: {available})")
    if not isinstance(content[split], list) or not all(isinstance(x, dict) for x in content[split]):
        raise InputError(path, f"split {split!r} must be a list of objects")
    for i, item in enumerate(content[split]):
        _check_item(path, split, i, item, num_labels)
    # resolve against an absolute folder: MONAI joins a relative base_dir to keys whose joined path exists (relative
    # to the working directory), so a relative dataset_dir would be joined twice below
    root = os.path.abspath(os.fspath(base_dir) if base_dir is not None else os.path.dirname(os.path.abspath(path)))
    items = load_decathlon_datalist(path, is_segmentation=False, data_list_key=split, base_dir=root)
    for item, raw in zip(items, content[split]):
        for key, value in raw.items():  # every path key once from the file's value; other keys exactly as written
            if key in PATH_KEYS and isinstance(value, str) and value:
                item[key] = value if os.path.isabs(value) else os.path.normpath(os.path.join(root, value))
            else:
                item[key] = value
    return items


def _side_file(folder: str | os.PathLike | None, key: str, accession: str) -> str | None:
    if folder is None:
        return None
    for suffix in _SIDE_SUFFIXES[key]:
        candidate = os.path.join(os.fspath(folder), accession + suffix)
        if os.path.exists(candidate):
            return candidate
    return None


def _assign_splits(
    accessions: Sequence[str], splits: Mapping[str, str] | Mapping[str, float] | None, seed: int, source: str
) -> dict[str, str]:
    if splits is None:
        splits = {"training": 0.8, "validation": 0.1, "test": 0.1}
    values = list(splits.values())
    if values and all(isinstance(v, str) for v in values):
        unknown = sorted({v for v in values if v not in SPLITS})
        if unknown:
            raise InputError(source, f"unknown split name(s) {unknown} (use {SPLITS})")
        missing = [a for a in accessions if a not in splits]
        if missing:
            raise InputError(source, f"no split given for accession(s) {missing[:10]}")
        return {a: str(splits[a]) for a in accessions}
    unknown = sorted(k for k in splits if k not in SPLITS)
    if unknown:
        raise InputError(source, f"unknown split name(s) {unknown} (use {SPLITS})")
    fractions = np.asarray([float(v) for v in values], dtype=float)
    if (fractions < 0).any() or fractions.sum() <= 0:
        raise InputError(source, f"split fractions must be >= 0 with a positive sum, got {dict(splits)}")
    order = np.random.RandomState(seed).permutation(len(accessions))
    bounds = np.round(np.cumsum(fractions / fractions.sum()) * len(accessions)).astype(int)
    names = list(splits)
    out: dict[str, str] = {}
    for rank, idx in enumerate(order):
        out[accessions[idx]] = names[int(np.searchsorted(bounds, rank, side="right"))]
    return out


def make_datalist(
    images_dir: str | os.PathLike,
    labels_csv: str | os.PathLike,
    out_path: str | os.PathLike,
    organs_dir: str | os.PathLike | None = None,
    locations_dir: str | os.PathLike | None = None,
    reports_dir: str | os.PathLike | None = None,
    splits: Mapping[str, str] | Mapping[str, float] | None = None,
    seed: int = 0,
    missing_labels: str = "error",
    extra_columns: str = "error",
) -> dict[str, list[dict]]:
    """Write a data-list JSON for a folder of CTs (NIfTI, NRRD, MHA, ``.npz`` files or DICOM series folders).

    Args:
        images_dir: folder of CTs; the accession of a scan is its name without suffix.
        labels_csv: labels CSV (accession + the 80 label columns, see
            :func:`~hirescam_ext.data.radchestct.read_labels_csv`).
        out_path: the JSON to write (atomically); item paths are stored relative to its folder.
        organs_dir, locations_dir, reports_dir: optional folders holding ``<accession>.nii.gz`` organ maps,
            ``<accession>.csv`` location tables, ``<accession>.txt`` reports; present files are listed.
        splits: ``{accession: split name}`` or ``{split name: fraction}`` (default 0.8/0.1/0.1, shuffled by ``seed``).
        seed: shuffling seed for fractional splits.
        missing_labels: ``"error"`` (default) or ``"skip"`` scans without a row in the labels CSV.
        extra_columns: passed to :func:`~hirescam_ext.data.radchestct.read_labels_csv`.

    Returns:
        the written ``{split: [items]}`` (paths relative to the JSON's folder).
    """
    if missing_labels not in ("error", "skip"):
        raise ValueError(f"missing_labels must be 'error' or 'skip', got {missing_labels!r}")
    scans = find_scans(images_dir)
    if not scans:
        raise InputError(images_dir, f"no CT scans found (suffixes {IMAGE_SUFFIXES} or DICOM series folders)")
    labels = read_labels_csv(labels_csv, extra_columns=extra_columns)
    unlabeled = [a for a in scans if a not in labels]
    if unlabeled and missing_labels == "error":
        raise InputError(labels_csv, f"no labels for scan(s) {unlabeled[:10]} found in {os.fspath(images_dir)}")
    accessions = [a for a in scans if a in labels]
    assignment = _assign_splits(accessions, splits, seed, os.fspath(labels_csv))
    root = os.path.dirname(os.path.abspath(os.fspath(out_path)))
    content: dict[str, list[dict]] = {}
    for acc in accessions:
        item: dict = {
            "image": os.path.relpath(scans[acc], root),
            "label": [int(v) for v in labels[acc]],
            "accession": acc,
        }
        for key, folder in (("organs", organs_dir), ("locations", locations_dir), ("report", reports_dir)):
            found = _side_file(folder, key, acc)
            if found is not None:
                item[key] = os.path.relpath(found, root)
        content.setdefault(assignment[acc], []).append(item)
    ordered = {name: content.get(name, []) for name in SPLITS if name in content or name in ("training", "validation")}
    write_json_atomic(out_path, ordered)
    return ordered
