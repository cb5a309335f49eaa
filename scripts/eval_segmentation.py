"""Evaluate the HU-only organ segmentation (``hirescam_ext.segmentation.segment_organs``) and print JSON.

Three references (all made by other algorithms or by a generator, see each PROVENANCE.md):

* CIP COPDGene ``ct-64`` with its left/right lung label map (``derived/lm-64_lungs_RL.nii.gz``: 1 right, 2 left),
  reoriented to RAS: lung Dice for the plain scan and for perturbed copies (shifted off-centre in-plane, rotated
  in-plane, resampled to 3 mm, cropped to the middle half of the slices);
* TotalSegmentator ``ct_cropped`` with its heart mask: fraction of the heart inside our heart/mediastinum region;
* TotalSegmentator ``example_ct`` (abdomen reaching the lung bases) with its lobe masks: lung Dice and the flag;
* the synthetic benchmark (``hirescam_ext.synthetic.generator.generate_case``): Dice of the three organs.

Usage:
    python scripts/eval_segmentation.py [--datasets ../shared/datasets] [--synthetic 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from hirescam_ext.segmentation import segment_organs

DEFAULT_DATASETS = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"
CIP_VARIANTS = ("plain", "shifted", "rotated", "resampled", "cropped")
AIR = -1024.0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both are empty)."""
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * float((a & b).sum()) / s


def load_ras(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Load an image with MONAI, reorient to RAS; returns the ``[X, Y, Z]`` array and the voxel size."""
    from monai.transforms import LoadImage, Orientation

    img = LoadImage(image_only=True, ensure_channel_first=True)(str(path))
    img = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))(img)
    aff = np.asarray(img.affine, dtype=float)
    spacing = tuple(float(v) for v in np.sqrt((aff[:3, :3] ** 2).sum(axis=0)))
    return np.asarray(img[0]), spacing  # type: ignore[return-value]


def load_cip(datasets: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """CIP ct-64 (HU, RAS) and its lung labels converted to our encoding (1 right lung, 3 left lung)."""
    folder = datasets / "cip-copdgene-chestct" / "derived"
    ct, spacing = load_ras(folder / "ct-64.nii.gz")
    lm, _ = load_ras(folder / "lm-64_lungs_RL.nii.gz")
    lab = np.zeros(lm.shape, np.uint8)
    lab[np.rint(lm) == 1] = 1  # PROVENANCE: 1 = right lung (regions 12-14)
    lab[np.rint(lm) == 2] = 3  # 2 = left lung (regions 9-11)
    return ct.astype(np.float32), lab, spacing


def perturb(ct: np.ndarray, lab: np.ndarray, spacing: tuple[float, ...], variant: str):
    """One perturbed copy of (CT, labels): ``plain``, ``shifted``, ``rotated``, ``resampled`` or ``cropped``."""
    spacing = tuple(spacing)
    if variant == "plain":
        return ct, lab, spacing
    if variant == "shifted":  # 10 voxels off-centre in x and y: pad with air on one side, crop the other
        pad = ((10, 0), (10, 0), (0, 0))
        ct2 = np.pad(ct, pad, constant_values=AIR)[: ct.shape[0], : ct.shape[1]]
        lab2 = np.pad(lab, pad)[: ct.shape[0], : ct.shape[1]]
        return ct2, lab2, spacing
    if variant == "rotated":  # 6 degrees in-plane
        ct2 = ndi.rotate(ct, 6.0, axes=(0, 1), reshape=False, order=1, mode="constant", cval=AIR)
        lab2 = ndi.rotate(lab, 6.0, axes=(0, 1), reshape=False, order=0, mode="constant", cval=0)
        return ct2.astype(np.float32), lab2, spacing
    if variant == "resampled":  # to 3 mm isotropic
        zoom = [s / 3.0 for s in spacing]
        ct2 = ndi.zoom(ct, zoom, order=1, mode="nearest")
        lab2 = ndi.zoom(lab, zoom, order=0, mode="nearest")
        return ct2.astype(np.float32), lab2, (3.0, 3.0, 3.0)
    if variant == "cropped":  # partial field of view: drop the top and bottom quarter of the slices
        n = ct.shape[2]
        sl = slice(n // 4, n - n // 4)
        return ct[:, :, sl], lab[:, :, sl], spacing
    raise ValueError(f"unknown variant {variant!r}")


def eval_cip(datasets: Path, variant: str = "plain") -> dict[str, Any]:
    """Right/left lung Dice on one CIP variant."""
    ct, lab, spacing = load_cip(datasets)
    ct, lab, spacing = perturb(ct, lab, spacing, variant)
    t0 = time.perf_counter()
    seg = segment_organs(ct, spacing=spacing)
    return {
        "variant": variant,
        "shape": list(ct.shape),
        "dice_right_lung": dice(seg.organs == 1, lab == 1),
        "dice_left_lung": dice(seg.organs == 3, lab == 3),
        "ok": seg.ok,
        "reasons": seg.reasons,
        "split": seg.split,
        "seconds": time.perf_counter() - t0,
    }


def eval_totalseg(datasets: Path) -> dict[str, Any]:
    """Fraction of the TotalSegmentator heart inside our heart/mediastinum region (ct_cropped)."""
    folder = datasets / "totalseg-ct-examples"
    ct, spacing = load_ras(folder / "ct_cropped.nii.gz")
    heart, _ = load_ras(folder / "derived" / "heart_on_ct_cropped_grid.nii.gz")
    heart = heart > 0.5
    seg = segment_organs(ct.astype(np.float32), spacing=spacing)
    region = seg.organs == 2
    return {
        "heart_coverage": float((heart & region).sum()) / max(1, int(heart.sum())),
        "dice_heart_vs_region": dice(heart, region),
        "ok": seg.ok,
        "reasons": seg.reasons,
        "notes": seg.notes,
    }


def eval_synthetic(n: int = 10, seed: int = 0, shape: tuple[int, int, int] | None = None) -> dict[str, Any]:
    """Dice of the three organs against the generator's truth on ``n`` synthetic cases."""
    from hirescam_ext.synthetic.generator import generate_case

    rows = []
    for i in range(n):
        case = generate_case(i, seed, shape=shape)
        t0 = time.perf_counter()
        seg = segment_organs(case.image, affine=case.affine)
        secs = time.perf_counter() - t0
        rows.append(
            {
                "index": i,
                "dice_right_lung": dice(seg.organs == 1, case.organs == 1),
                "dice_heart_mediastinum": dice(seg.organs == 2, case.organs == 2),
                "dice_left_lung": dice(seg.organs == 3, case.organs == 3),
                "ok": seg.ok,
                "reasons": seg.reasons,
                "seconds": secs,
            }
        )
    summary = {
        k: {"mean": float(np.mean([r[k] for r in rows])), "min": float(np.min([r[k] for r in rows]))}
        for k in ("dice_right_lung", "dice_heart_mediastinum", "dice_left_lung")
    }
    return {"n": n, "seed": seed, "summary": summary, "cases": rows}


#: TotalSegmentator "total" task labels of the lung lobes (``class_map["total"]``; see that folder's PROVENANCE.md)
TOTALSEG_LOBES = {"right": (12, 13, 14), "left": (10, 11)}


def eval_totalseg_abdomen(datasets: Path) -> dict[str, Any]:
    """Lung Dice against TotalSegmentator's lobes on ``example_ct`` (abdomen with lung bases) and the quality flag."""
    folder = datasets / "totalseg-ct-examples"
    ct, spacing = load_ras(folder / "example_ct.nii.gz")
    ref, _ = load_ras(folder / "example_seg_fast_force_split.nii.gz")
    ref = np.rint(ref).astype(int)
    seg = segment_organs(ct.astype(np.float32), spacing=spacing)
    return {
        "dice_right_lung": dice(seg.organs == 1, np.isin(ref, TOTALSEG_LOBES["right"])),
        "dice_left_lung": dice(seg.organs == 3, np.isin(ref, TOTALSEG_LOBES["left"])),
        "heart_mediastinum_ml": seg.volumes_ml["heart_mediastinum"],
        "ok": seg.ok,
        "reasons": seg.reasons,
        "notes": seg.notes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    parser.add_argument("--synthetic", type=int, default=10, help="number of synthetic cases (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out: dict[str, Any] = {}
    if (args.datasets / "cip-copdgene-chestct").is_dir():
        out["cip"] = {v: eval_cip(args.datasets, v) for v in CIP_VARIANTS}
    else:
        out["cip"] = f"skipped: {args.datasets / 'cip-copdgene-chestct'} not found"
    if (args.datasets / "totalseg-ct-examples").is_dir():
        out["totalseg_heart"] = eval_totalseg(args.datasets)
        out["totalseg_abdomen"] = eval_totalseg_abdomen(args.datasets)
    else:
        out["totalseg_heart"] = f"skipped: {args.datasets / 'totalseg-ct-examples'} not found"
        out["totalseg_abdomen"] = out["totalseg_heart"]
    if args.synthetic > 0:
        out["synthetic"] = eval_synthetic(args.synthetic, args.seed)
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
