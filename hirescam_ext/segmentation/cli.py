"""``hirescam segment``: organ maps (right lung, heart/mediastinum, left lung) for CT files and DICOM folders.

For every input (any file MONAI ``LoadImage`` reads, or a DICOM series folder) it writes, atomically, into
``--out``: ``<name>_organs.nii.gz`` (uint8, the scan's own grid and affine; 0 bg, 1 right lung,
2 heart/mediastinum, 3 left lung) and ``<name>_organs.json`` (quality flags: ``ok``, ``reasons``, ``fallback``,
``notes``, volumes). A batch goes on past unreadable inputs; they are listed on stderr and in
``segment_summary.json``, and the exit status is 1 when any input failed. A re-run keeps the outputs of inputs that
were already segmented (both files present and loadable) unless ``--overwrite``. The method is the HU-only segmentation
of :func:`hirescam_ext.segmentation.segment_organs` (organ regions of Draelos & Carin, HiResCAM,
arXiv:2011.08891).

Example:
    $ hirescam segment scan1.nii.gz dicom_folder/ --out organs/
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from hirescam_ext.utils.errors import InputError
from hirescam_ext.utils.io import atomic_write, ensure_writable_dir, write_json_atomic

__all__ = ["main", "segment_file", "scan_name"]

logger = logging.getLogger("hirescam_ext.segmentation")

_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm", ".npy", ".npz", ".png", ".tif", ".tiff")


def scan_name(path: str | os.PathLike) -> str:
    """Output stem of an input: the file name without its image suffix, or the DICOM folder's name."""
    base = os.path.basename(os.path.normpath(os.fspath(path)))
    for suf in _SUFFIXES:
        if base.lower().endswith(suf):
            return base[: -len(suf)] or base
    return base


def _load(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a CT with the project's checked loader: unreadable files, DICOM series faults, 2D/4D, NaN, blank or
    non-HU images raise an ``InputError`` naming the file."""
    from hirescam_ext.utils.ct_checks import load_ct

    img = load_ct(path, hounsfield=True, min_voxels=1)
    arr = np.asarray(img.detach().cpu().numpy())
    affine = np.asarray(img.affine.detach().cpu().numpy(), dtype=float)
    return arr, affine


def segment_file(path: str | os.PathLike, out_dir: str | os.PathLike, name: str | None = None, **kwargs: Any) -> dict:
    """Segment one scan and write ``<name>_organs.nii.gz`` and ``<name>_organs.json``; returns the JSON record.

    Raises:
        InputError: the input cannot be read or is not a 3D volume.
    """
    import nibabel as nib

    from hirescam_ext.segmentation.organs import segment_organs

    path = os.fspath(path)
    name = name or scan_name(path)
    arr, affine = _load(path)
    try:
        seg = segment_organs(arr, affine=affine, **kwargs)
    except InputError as exc:
        raise InputError(path, exc.problem) from exc
    seg_path = os.path.join(os.fspath(out_dir), f"{name}_organs.nii.gz")
    img = nib.Nifti1Image(seg.organs.astype(np.uint8), affine)
    img.header.set_data_dtype(np.uint8)
    with atomic_write(seg_path) as tmp:
        nib.save(img, tmp)
    record = {"input": path, "organs": seg_path, "shape": list(arr.shape), **seg.quality()}
    write_json_atomic(os.path.join(os.fspath(out_dir), f"{name}_organs.json"), record)
    return record


def _finished(path: str, out_dir: str, name: str) -> dict | None:
    """The summary record of an input already segmented by an earlier run (both outputs present and loadable)."""
    import json

    import nibabel as nib

    seg_path = os.path.join(out_dir, f"{name}_organs.nii.gz")
    json_path = os.path.join(out_dir, f"{name}_organs.json")
    try:
        with open(json_path, encoding="utf-8") as f:
            record = json.load(f)
        if record.get("input") != path or nib.load(seg_path).ndim != 3:
            return None
    except Exception:  # noqa: BLE001 - anything missing or unreadable is simply redone
        return None
    return {"input": path, "organs": seg_path, "ok": record.get("ok"), "reasons": record.get("reasons", [])}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``hirescam segment``; returns 0 when every input was segmented, 1 otherwise."""
    parser = argparse.ArgumentParser(
        prog="hirescam segment",
        description="Segment right lung, left lung and heart/mediastinum of chest CT scans (HU, no training).",
    )
    parser.add_argument("inputs", nargs="+", help="CT files (NIfTI, NRRD, MHA, DICOM file...) or DICOM folders")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--working-spacing", type=float, default=2.4, help="internal grid spacing in mm (2.4)")
    parser.add_argument("--lung-hu", type=float, default=-450.0, help="lung/air threshold in HU (-450)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--overwrite", action="store_true", help="redo inputs whose outputs already exist and load")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every quality note")
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    from tqdm import tqdm

    try:
        ensure_writable_dir(args.out)
    except InputError as exc:
        print(f"hirescam segment: error: {exc}", file=sys.stderr)
        return 2
    done: list[dict] = []
    failed: list[dict] = []
    used: dict[str, int] = {}
    for path in tqdm(args.inputs, desc="segment", unit="scan", disable=args.no_progress):
        name = scan_name(path)
        used[name] = used.get(name, 0) + 1
        if used[name] > 1:
            name = f"{name}_{used[name]}"
        kept = None if args.overwrite else _finished(path, args.out, name)
        if kept is not None:
            done.append({**kept, "kept": True})
            continue
        try:
            rec = segment_file(path, args.out, name, working_spacing=args.working_spacing, lung_hu=args.lung_hu)
        except InputError as exc:
            failed.append({"input": path, "error": str(exc)})
            logger.error("skipped %s", exc)
            continue
        except Exception as exc:  # noqa: BLE001 - one scan's failure must not stop the batch
            failed.append({"input": path, "error": f"{path}: segmentation failed ({type(exc).__name__}: {exc})"})
            logger.exception("skipped %s", path)
            continue
        done.append({"input": path, "organs": rec["organs"], "ok": rec["ok"], "reasons": rec["reasons"],
                     "partial_field_of_view": rec.get("partial_field_of_view", False)})
        if not rec["ok"]:
            logger.warning("%s: segmentation flagged: %s", path, "; ".join(rec["reasons"]))
        if rec.get("partial_field_of_view"):
            logger.warning("%s: partial field of view (a lung touches the volume border)", path)
    write_json_atomic(os.path.join(args.out, "segment_summary.json"), {"segmented": done, "failed": failed})
    if failed:
        print(f"hirescam segment: {len(failed)} of {len(args.inputs)} input(s) failed:", file=sys.stderr)
        for f in failed:
            print(f"  {f['error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
