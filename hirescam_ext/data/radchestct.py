"""RAD-ChestCT file formats: the compressed ``.npz`` volumes, the labels CSV and the per-scan location tables.

RAD-ChestCT (Draelos et al.; used by Draelos & Carin, HiResCAM, arXiv:2011.08891) stores each CT as a compressed
``.npz`` holding one array under the key ``ct``: int16 Hounsfield units, 0.8 mm isotropic, axis order
``[slices, rows, cols]``. The array carries no geometry, so :class:`RadChestCTNpzReader` assumes the orientation
of a standard head-first-supine axial acquisition shown in radiological convention:

* ``rows`` run anterior -> posterior (row 0 is the top of the displayed slice, the patient's front);
* ``cols`` run patient right -> patient left (column 0 is on the viewer's left, i.e. the patient's right);
* ``slices`` run inferior -> superior (slice 0 is the lowest; the stored volumes were sorted by ascending
  ``ImagePositionPatient`` z). Pass ``slice_order="superior_to_inferior"`` if your copy is stored the other way.

The reader returns the array in MONAI's ``[X, Y, Z]`` order, i.e. ``[cols, rows, slices]``, with an affine whose
world frame is RAS: ``X`` grows toward the patient's left (world x decreases), ``Y`` toward posterior (world y
decreases), ``Z`` toward superior. ``Orientationd(axcodes="RAS")`` then flips ``X`` and ``Y`` like for any
DICOM-derived volume, so both routes (files MONAI reads natively and RAD-ChestCT) feed the same pipeline.

Example:
    >>> from monai.transforms import LoadImaged
    >>> load = LoadImaged(keys="image", reader=RadChestCTNpzReader(), ensure_channel_first=True)
    >>> item = load({"image": "trn00001.npz"})  # doctest: +SKIP
    >>> item["image"].shape  # [1, cols, rows, slices]  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from monai.data import ImageReader
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

from hirescam_ext.labels import LABEL_NAMES, LOCATION_NAMES
from hirescam_ext.utils.errors import InputError
from hirescam_ext.utils.io import atomic_write

__all__ = [
    "NPZ_KEY",
    "RADCHESTCT_SPACING",
    "RadChestCTNpzReader",
    "npz_affine",
    "write_radchestct_npz",
    "read_labels_csv",
    "write_labels_csv",
    "read_location_table",
    "write_location_table",
]

#: key of the volume inside a RAD-ChestCT ``.npz``.
NPZ_KEY = "ct"
#: RAD-ChestCT voxel size in millimetres (isotropic).
RADCHESTCT_SPACING = 0.8
_SLICE_ORDERS = ("inferior_to_superior", "superior_to_inferior")


def npz_affine(
    shape_xyz: Sequence[int], spacing: float = RADCHESTCT_SPACING, slice_order: str = "inferior_to_superior"
) -> np.ndarray:
    """RAS affine of a RAD-ChestCT volume already transposed to ``[X, Y, Z] = [cols, rows, slices]``.

    The world origin is put at the centre of the volume (the files carry no position).

    Args:
        shape_xyz: spatial shape ``(cols, rows, slices)``.
        spacing: isotropic voxel size in mm.
        slice_order: ``"inferior_to_superior"`` (default, see the module docstring) or ``"superior_to_inferior"``.
    """
    if slice_order not in _SLICE_ORDERS:
        raise ValueError(f"slice_order must be one of {_SLICE_ORDERS}, got {slice_order!r}")
    z_sign = 1.0 if slice_order == "inferior_to_superior" else -1.0
    affine = np.diag([-spacing, -spacing, z_sign * spacing, 1.0])
    centre = (np.asarray(shape_xyz, dtype=float) - 1.0) / 2.0
    affine[:3, 3] = -affine[:3, :3] @ centre
    return affine


class RadChestCTNpzReader(ImageReader):
    """MONAI image reader for RAD-ChestCT ``.npz`` volumes (key ``ct``, ``[slices, rows, cols]``, int16 HU).

    Usable as ``LoadImaged(keys="image", reader=RadChestCTNpzReader())``. The returned array is ``[X, Y, Z]``
    (``[cols, rows, slices]``) with the RAS affine of :func:`npz_affine`; see the module docstring for the
    orientation assumption.

    Args:
        key: array key inside the ``.npz``.
        spacing: isotropic voxel size in mm (0.8 for RAD-ChestCT).
        slice_order: ``"inferior_to_superior"`` or ``"superior_to_inferior"``.
    """

    def __init__(
        self, key: str = NPZ_KEY, spacing: float = RADCHESTCT_SPACING, slice_order: str = "inferior_to_superior"
    ):
        super().__init__()
        if slice_order not in _SLICE_ORDERS:
            raise ValueError(f"slice_order must be one of {_SLICE_ORDERS}, got {slice_order!r}")
        self.key = key
        self.spacing = float(spacing)
        self.slice_order = slice_order

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        return all(os.fspath(f).lower().endswith(".npz") for f in ensure_tuple(filename))

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any) -> list[tuple[str, Any]]:
        out = []
        for name in ensure_tuple(data):
            path = os.fspath(name)
            try:
                with np.load(path, allow_pickle=False) as npz:
                    if self.key not in npz.files:
                        raise InputError(path, f"no array under key {self.key!r} (keys: {sorted(npz.files)})")
                    array = npz[self.key]
            except InputError:
                raise
            except (OSError, ValueError) as exc:
                raise InputError(path, f"not a readable .npz file ({exc})") from exc
            if array.ndim != 3:
                raise InputError(path, f"expected a 3D [slices, rows, cols] array, got shape {array.shape}")
            out.append((path, array))
        return out

    def get_data(self, img: list[tuple[str, Any]]) -> tuple[np.ndarray, dict]:
        arrays, meta = [], {}
        for i, (path, array) in enumerate(img):
            from hirescam_ext.transforms.loading import to_c_order  # lazy: transforms imports this module

            xyz = to_c_order(np.transpose(array, (2, 1, 0)))  # cache-friendly axis reversal
            arrays.append(xyz)
            if i == 0:
                affine = npz_affine(xyz.shape, self.spacing, self.slice_order)
                meta = {
                    MetaKeys.AFFINE: affine,
                    MetaKeys.ORIGINAL_AFFINE: affine.copy(),
                    MetaKeys.SPATIAL_SHAPE: np.asarray(xyz.shape),
                    MetaKeys.SPACE: SpaceKeys.RAS,
                    MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan") if len(img) == 1 else 0,
                    "filename_or_obj": path,
                }
        data = arrays[0] if len(arrays) == 1 else np.stack(arrays, axis=0)
        return data, meta


def write_radchestct_npz(path: str | os.PathLike, volume_srs: np.ndarray, key: str = NPZ_KEY) -> None:
    """Write a ``[slices, rows, cols]`` int16 HU volume as a compressed RAD-ChestCT ``.npz`` (atomically)."""
    array = np.asarray(volume_srs)
    if array.ndim != 3:
        raise ValueError(f"expected a 3D [slices, rows, cols] array, got shape {array.shape}")
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **{key: array.astype(np.int16)})


# ---------------------------------------------------------------- CSV tables
def _read_csv_rows(path: str | os.PathLike) -> tuple[list[str], list[list[str]]]:
    path = os.fspath(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a byte order mark (Excel) is dropped
            rows = [row for row in csv.reader(f) if any(cell.strip() for cell in row)]
    except OSError as exc:
        raise InputError(path, f"cannot read the file ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(path, "not a UTF-8 text CSV file") from exc
    if not rows:
        raise InputError(path, "empty CSV file (no header)")
    header = [cell.strip() for cell in rows[0]]
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise InputError(path, f"duplicated column(s) {dup}")
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise InputError(path, f"line {n} has {len(row)} fields, the header has {len(header)}")
    return header, [[cell.strip() for cell in row] for row in rows[1:]]


def _binary(path: str, value: str, where: str) -> int:
    if value in ("0", "1"):
        return int(value)
    try:
        number = float(value)
    except ValueError:
        number = None
    if number in (0.0, 1.0):
        return int(number)
    raise InputError(path, f"{where}: value {value!r} is not 0 or 1")


def read_labels_csv(
    path: str | os.PathLike,
    label_names: Sequence[str] = LABEL_NAMES,
    accession_column: str | None = None,
    extra_columns: str = "error",
) -> dict[str, np.ndarray]:
    """Read a labels CSV (one row per scan: accession, then one 0/1 column per abnormality).

    Args:
        path: the CSV file.
        label_names: the expected abnormality columns; the result follows this order.
        accession_column: name of the accession column; default ``accession`` when present, else the first column.
        extra_columns: ``"error"`` (default) rejects columns that are not labels, ``"ignore"`` drops them (the
            public RAD-ChestCT file has 83 abnormality columns, of which the paper uses 80).

    Returns:
        ``{accession: uint8 vector of len(label_names)}`` in file order.

    Raises:
        InputError: naming the file for a missing or unknown column, a duplicated accession, a value not 0/1.

    Example:
        >>> labels = read_labels_csv("labels.csv")  # doctest: +SKIP
        >>> labels["trn00001"].shape  # doctest: +SKIP
        (80,)
    """
    path = os.fspath(path)
    if extra_columns not in ("error", "ignore"):
        raise ValueError(f"extra_columns must be 'error' or 'ignore', got {extra_columns!r}")
    header, rows = _read_csv_rows(path)
    acc_col = accession_column or ("accession" if "accession" in header else header[0])
    if acc_col not in header:
        raise InputError(path, f"missing accession column {acc_col!r}")
    missing = [name for name in label_names if name not in header]
    if missing:
        raise InputError(path, f"missing label column(s) {missing[:10]}{' ...' if len(missing) > 10 else ''}")
    unknown = [h for h in header if h != acc_col and h not in set(label_names)]
    if unknown and extra_columns == "error":
        raise InputError(path, f"unknown column(s) {unknown[:10]} (not among the {len(label_names)} label names)")
    acc_i = header.index(acc_col)
    col_i = [header.index(name) for name in label_names]
    out: dict[str, np.ndarray] = {}
    for n, row in enumerate(rows, start=2):
        acc = row[acc_i]
        if not acc:
            raise InputError(path, f"line {n}: empty accession")
        if acc in out:
            raise InputError(path, f"line {n}: duplicated accession {acc!r}")
        out[acc] = np.asarray(
            [_binary(path, row[i], f"line {n}, column {header[i]!r}") for i in col_i], dtype=np.uint8
        )
    return out


def write_labels_csv(
    path: str | os.PathLike, labels: Mapping[str, Sequence[int]], label_names: Sequence[str] = LABEL_NAMES
) -> None:
    """Write ``{accession: 0/1 vector}`` as a labels CSV (``accession`` + one column per label), atomically."""
    with atomic_write(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["accession", *label_names])
        for acc, vector in labels.items():
            values = [int(v) for v in np.asarray(vector).reshape(-1)]
            if len(values) != len(label_names):
                raise ValueError(f"{acc}: {len(values)} labels, expected {len(label_names)}")
            writer.writerow([acc, *values])


def read_location_table(
    path: str | os.PathLike,
    label_names: Sequence[str] = LABEL_NAMES,
    location_names: Sequence[str] = LOCATION_NAMES,
) -> dict[str, list[str]]:
    """Read one scan's abnormality x location table (docs/ARCHITECTURE.md).

    The CSV has a first column ``abnormality`` holding label names, then one 0/1 column per location name.
    Location columns may be a subset of ``location_names`` (absent columns count as 0) but unknown names are
    rejected, as are unknown or repeated abnormalities and values other than 0/1.

    Returns:
        ``{abnormality: [positive location names, in location_names order]}`` for the rows of the file, a plain
        structure that caches safely (``PersistentDataset`` loads with ``weights_only=True``).

    Example:
        >>> read_location_table("locations/trn00001.csv")  # doctest: +SKIP
        {'lung_nodule': ['right_upper', 'right_lung'], ...}
    """
    path = os.fspath(path)
    header, rows = _read_csv_rows(path)
    if header[0] != "abnormality":
        raise InputError(path, f"first column must be 'abnormality', got {header[0]!r}")
    known_loc, known_lab = set(location_names), set(label_names)
    unknown = [h for h in header[1:] if h not in known_loc]
    if unknown:
        raise InputError(path, f"unknown location column(s) {unknown[:10]}")
    order = {name: i for i, name in enumerate(location_names)}
    table: dict[str, list[str]] = {}
    for n, row in enumerate(rows, start=2):
        name = row[0]
        if name not in known_lab:
            raise InputError(path, f"line {n}: unknown abnormality {name!r}")
        if name in table:
            raise InputError(path, f"line {n}: abnormality {name!r} appears twice")
        positive = [header[i] for i in range(1, len(header)) if _binary(path, row[i], f"line {n}, {header[i]!r}")]
        table[name] = sorted(positive, key=order.__getitem__)
    return table


def write_location_table(
    path: str | os.PathLike,
    table: Mapping[str, Sequence[str]],
    location_names: Sequence[str] = LOCATION_NAMES,
) -> None:
    """Write ``{abnormality: [locations]}`` as a location-table CSV with every location column, atomically."""
    known = set(location_names)
    with atomic_write(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["abnormality", *location_names])
        for name, locations in table.items():
            bad = [loc for loc in locations if loc not in known]
            if bad:
                raise ValueError(f"{name}: unknown location(s) {bad}")
            chosen = set(locations)
            writer.writerow([name, *(int(loc in chosen) for loc in location_names)])
