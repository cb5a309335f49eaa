"""Find the CT scans a user points the inference workflow at.

A scan is one file MONAI can read (NIfTI, NRRD, MetaImage, RAD-ChestCT ``.npz``) or one folder holding a DICOM
series. Folders are searched recursively; a folder that holds DICOM files is one scan.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from hirescam_ext.utils.errors import InputError
from hirescam_ext.utils.io import is_dicom_file

__all__ = ["VOLUME_SUFFIXES", "find_ct_inputs", "is_dicom_file", "scan_name", "unique_scan_names"]

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".npz")


def scan_name(path: str | os.PathLike) -> str:
    """A file-system-safe name for a scan: the file name without its volume suffix, or the folder name."""
    name = Path(path).name
    for suffix in VOLUME_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def unique_scan_names(sources: Iterable[str | os.PathLike]) -> list[str]:
    """One output name per scan, unique within the run: the scan's name, prefixed by as many parent folders as
    needed to tell apart scans of the same name (``p1/ct.nii.gz``, ``p2/ct.nii.gz`` -> ``p1_ct``, ``p2_ct``).

    Raises:
        InputError: when two entries are the same path.
    """
    paths = [Path(os.path.normpath(os.fspath(s))) for s in sources]
    if len(set(paths)) != len(paths):
        dup = next(p for p in paths if paths.count(p) > 1)
        raise InputError(dup, "listed twice among the inputs")
    depth = [0] * len(paths)

    def name(i: int) -> str:
        parents = [p.name for p in paths[i].parents][: depth[i]]
        return "_".join([*reversed(parents), scan_name(paths[i])])

    while True:
        names = [name(i) for i in range(len(paths))]
        clashes = [i for i, n in enumerate(names) if names.count(n) > 1]
        if not clashes:
            return names
        grown = False
        for i in clashes:
            if depth[i] < len(paths[i].parents):
                depth[i] += 1
                grown = True
        if not grown:  # cannot happen for distinct paths, but never loop forever
            return [f"{n}_{i}" for i, n in enumerate(names)]


def _has_dicom(folder: Path) -> bool:
    return any(p.is_file() and is_dicom_file(p) for p in folder.iterdir())


def find_ct_inputs(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    """Expand files and folders into a sorted list of scans (volume files and DICOM series folders).

    Args:
        paths: one path or several; a folder is searched recursively.

    Raises:
        InputError: when a path does not exist, or nothing readable is found.

    Example:
        >>> find_ct_inputs("scans/")  # doctest: +SKIP
        ['scans/a.nii.gz', 'scans/patient_2_dicom']
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[str] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputError(path, "does not exist")
        if path.is_file():
            found.append(str(path))
            continue
        for folder, dirs, files in os.walk(path):
            dirs.sort()
            folder_path = Path(folder)
            if _has_dicom(folder_path):
                found.append(str(folder_path))
                dirs[:] = []
                continue
            found += [str(folder_path / f) for f in sorted(files) if f.lower().endswith(VOLUME_SUFFIXES)]
    if not found:
        raise InputError(", ".join(map(str, paths)), "no CT volumes (NIfTI, NRRD, MHA, npz) or DICOM series found")
    return found
