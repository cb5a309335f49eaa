"""``hirescam regions``: precompute organ maps and location tables, the inputs of the allowed regions G_true.

For every scan of a dataset folder (``images/`` + ``reports/``, the layout of docs/ARCHITECTURE.md) or of a data
list, it writes ``organs/<accession>.nii.gz`` (uint8: 1 right lung, 2 heart/mediastinum, 3 left lung; from
:func:`hirescam_ext.segmentation.segment_organs`) and ``locations/<accession>.csv`` (the abnormality x location
table of :class:`hirescam_ext.labeling.ReportLabeler`). G_true itself is built on the fly in the data pipeline by
:class:`~hirescam_ext.regions.allowed.AllowedRegionsd` (Draelos & Carin, HiResCAM, arXiv:2011.08891).

The run is resumable (valid existing outputs are kept unless ``--overwrite``), every write is atomic, and a
failing scan does not stop the others: failures go to a JSON file and the exit status is 1.

Example:
    hirescam regions --dataset synth/ --out synth/
    hirescam regions --datalist data/datalist.json --split training --out data/
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hirescam_ext.utils.errors import InputError
from hirescam_ext.utils.io import atomic_write, write_json_atomic

__all__ = ["build_parser", "collect_scans", "main"]

_STEPS = ("organs", "locations")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hirescam regions",
        description="Precompute organ maps (organs/<acc>.nii.gz) and location tables (locations/<acc>.csv).",
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="dataset folder with images/ (CTs) and reports/ (<acc>.txt)")
    src.add_argument("--datalist", help="data-list JSON (items with image, accession, optional report)")
    parser.add_argument("--split", action="append", help="data-list split(s) to process (default: all)")
    parser.add_argument("--out", help="output folder (default: the dataset folder or the data list's folder)")
    parser.add_argument("--skip-organs", action="store_true", help="do not segment organs")
    parser.add_argument("--skip-locations", action="store_true", help="do not label reports")
    parser.add_argument("--overwrite", action="store_true", help="recompute outputs that already exist")
    parser.add_argument("--failures", help="failures JSON (default: <out>/regions_failures.json)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def collect_scans(dataset: str | None, datalist: str | None, splits: Sequence[str] | None) -> list[dict]:
    """Scans to process as ``{"accession", "image", "report"?}`` items (paths absolute)."""
    from hirescam_ext.data.datalist import SPLITS, accession_of, find_scans, load_datalist

    items: list[dict] = []
    if dataset is not None:
        images = os.path.join(dataset, "images")
        scans = find_scans(images if os.path.isdir(images) else dataset)
        for acc, path in scans.items():
            report = os.path.join(dataset, "reports", f"{acc}.txt")
            items.append({"accession": acc, "image": path, "report": report if os.path.exists(report) else None})
        return items
    assert datalist is not None
    with open(datalist, encoding="utf-8") as f:
        try:
            content = json.load(f)
        except json.JSONDecodeError as exc:
            raise InputError(datalist, f"not valid JSON ({exc})") from exc
    names = list(splits) if splits else [s for s in content if s in SPLITS]
    seen: set[str] = set()
    for split in names:
        for item in load_datalist(datalist, split):
            acc = str(item.get("accession") or accession_of(item["image"]))
            if acc in seen:
                continue
            seen.add(acc)
            items.append({"accession": acc, "image": item["image"], "report": item.get("report")})
    return items


# ------------------------------------------------------------------ validity of existing outputs
def _organs_valid(path: str) -> bool:
    try:
        import nibabel as nib

        data = np.asanyarray(nib.load(path).dataobj)
        return data.ndim == 3 and np.issubdtype(data.dtype, np.integer) and int(data.max(initial=0)) <= 3
    except Exception:  # noqa: BLE001 - any unreadable file is simply recomputed
        return False


def _locations_valid(path: str) -> bool:
    from hirescam_ext.data.radchestct import read_location_table

    try:
        read_location_table(path)
        return True
    except Exception:  # noqa: BLE001
        return False


# ------------------------------------------------------------------ the two steps
def _load_segmenter() -> Callable[..., Any]:
    try:
        from hirescam_ext.segmentation import segment_organs
    except ImportError as exc:
        raise RuntimeError(f"organ segmentation is not available (hirescam_ext.segmentation: {exc})") from exc
    return segment_organs


def _load_labeler() -> Any:
    try:
        from hirescam_ext.labeling import ReportLabeler
    except ImportError as exc:
        raise RuntimeError(f"report labeling is not available (hirescam_ext.labeling: {exc})") from exc
    return ReportLabeler()


def _segment(scan: dict, out_path: str, segment: Callable[..., Any]) -> dict:
    import nibabel as nib

    from hirescam_ext.utils.ct_checks import load_ct

    # unreadable files and DICOM series faults raise an InputError naming the file; values are the segmenter's job
    image = load_ct(scan["image"], check_values=False, min_voxels=1)
    affine = np.asarray(image.affine, dtype=float)
    volume = np.asarray(image.as_tensor().numpy(), dtype=np.float32)
    if volume.ndim != 3:
        raise InputError(scan["image"], f"expected a 3D CT, got shape {volume.shape}")
    result = segment(volume, affine=affine)
    organs = np.asarray(getattr(result, "organs", result), dtype=np.uint8)
    if organs.shape != volume.shape:
        raise RuntimeError(f"segmentation returned shape {organs.shape} for a CT of shape {volume.shape}")
    with atomic_write(out_path) as tmp:
        nib.save(nib.Nifti1Image(organs, affine), tmp)
    quality = result.quality() if callable(getattr(result, "quality", None)) else {"ok": getattr(result, "ok", True)}
    return quality


def _label(scan: dict, out_path: str, labeler: Any) -> None:
    from hirescam_ext.data.radchestct import write_location_table

    report = scan.get("report")
    if not report or not os.path.exists(report):
        raise InputError(report or scan["image"], "no report text found for this scan (reports/<accession>.txt)")
    with open(report, encoding="utf-8") as f:
        text = f.read()
    result = labeler.label(text)
    rows = result.location_rows() if callable(getattr(result, "location_rows", None)) else dict(result.locations)
    write_location_table(out_path, rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hirescam regions``; returns 0 when every scan succeeded, 1 when some failed, 2 on bad input."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        scans = collect_scans(args.dataset, args.datalist, args.split)
    except (InputError, OSError) as exc:
        print(f"hirescam regions: {exc}", file=sys.stderr)
        return 2
    out = args.out or args.dataset or os.path.dirname(os.path.abspath(args.datalist))
    failures_path = args.failures or os.path.join(out, "regions_failures.json")
    steps = [s for s in _STEPS if not getattr(args, f"skip_{s}")]
    tools: dict[str, Any] = {}
    tool_errors: dict[str, str] = {}
    for step, loader in (("organs", _load_segmenter), ("locations", _load_labeler)):
        if step in steps:
            try:
                tools[step] = loader()
            except RuntimeError as exc:
                tool_errors[step] = str(exc)
                print(f"hirescam regions: {exc}", file=sys.stderr)

    counts = {f"{s}_{k}": 0 for s in steps for k in ("written", "kept")}
    failures: list[dict] = []
    flagged: list[dict] = []
    try:
        from tqdm import tqdm

        iterator = tqdm(scans, desc="regions", unit="scan", disable=args.no_progress, file=sys.stderr)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        iterator = scans
    for scan in iterator:
        acc = scan["accession"]
        for step in steps:
            suffix = ".nii.gz" if step == "organs" else ".csv"
            target = os.path.join(out, step, f"{acc}{suffix}")
            valid = _organs_valid if step == "organs" else _locations_valid
            if not args.overwrite and os.path.exists(target) and valid(target):
                counts[f"{step}_kept"] += 1
                continue
            if step in tool_errors:
                failures.append({"accession": acc, "step": step, "error": tool_errors[step]})
                continue
            try:
                if step == "organs":
                    quality = _segment(scan, target, tools["organs"])
                    if not quality.get("ok", True):
                        flagged.append({"accession": acc, **quality})
                else:
                    _label(scan, target, tools["locations"])
                counts[f"{step}_written"] += 1
            except Exception as exc:  # noqa: BLE001 - one bad scan must not stop the rest
                failures.append(
                    {
                        "accession": acc,
                        "step": step,
                        "error": f"{type(exc).__name__}: {exc}",
                        "traceback": traceback.format_exc(limit=3),
                    }
                )
    summary = {"scans": len(scans), "out": os.path.abspath(out), **counts, "failed": len(failures)}
    summary["segmentation_flagged"] = [f["accession"] for f in flagged]
    if failures or flagged:
        write_json_atomic(failures_path, {"failures": failures, "segmentation_flagged": flagged})
        summary["failures_file"] = os.path.abspath(failures_path)
    elif os.path.exists(failures_path):
        os.remove(failures_path)  # a clean rerun leaves no stale failure list
    print(json.dumps(summary, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
