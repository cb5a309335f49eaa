"""Speed benchmark of ``hirescam_ext.segmentation.segment_organs`` on a phantom-like 420x420x405 volume (0.8 mm).

The volume is a synthetic-benchmark phantom (``hirescam_ext.synthetic.generator.generate_case``) generated at 2.4 mm
and up-sampled 3x (trilinear for HU, with fresh noise; repetition for the truth), i.e. the size of a RAD-ChestCT
scan after the paper's 0.8 mm preprocessing (Draelos & Carin, HiResCAM, arXiv:2011.08891). Prints JSON: wall time
per call (best and median of ``--repeats``), Dice of each organ, and optionally (``--full-res``) the Dice cost of
the internal working grid, measured against a run on the full 0.8 mm grid.

Usage:
    OMP_NUM_THREADS=2 python scripts/benchmark_segmentation.py [--repeats 3] [--full-res]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from scipy import ndimage as ndi

from hirescam_ext.segmentation import segment_organs

ORGANS = ((1, "right_lung"), (2, "heart_mediastinum"), (3, "left_lung"))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * float((a & b).sum()) / s


def make_volume(seed: int = 0, index: int = 0) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """420x420x405 int16 HU phantom at 0.8 mm and its organ truth."""
    from hirescam_ext.synthetic.generator import generate_case

    case = generate_case(index, seed, shape=(140, 140, 135), spacing=(2.4, 2.4, 2.4))
    hu = ndi.zoom(case.image.astype(np.float32), 3, order=1, mode="nearest")
    hu += np.random.default_rng(seed).normal(0.0, 12.0, hu.shape).astype(np.float32)
    truth = case.organs.repeat(3, 0).repeat(3, 1).repeat(3, 2)
    return np.rint(hu).astype(np.int16), truth, (0.8, 0.8, 0.8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full-res", action="store_true", help="also run on the full 0.8 mm grid (slow)")
    args = parser.parse_args(argv)
    hu, truth, spacing = make_volume(args.seed)
    times = []
    seg = None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        seg = segment_organs(hu, spacing=spacing)
        times.append(time.perf_counter() - t0)
    assert seg is not None
    out = {
        "shape": list(hu.shape),
        "spacing_mm": list(spacing),
        "threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "cpu_count": os.cpu_count(),
        "seconds_best": min(times),
        "seconds_median": float(np.median(times)),
        "target_seconds": 2.0,
        "dice": {name: dice(seg.organs == k, truth == k) for k, name in ORGANS},
        "ok": seg.ok,
        "reasons": seg.reasons,
    }
    if args.full_res:
        t0 = time.perf_counter()
        full = segment_organs(hu, spacing=spacing, working_spacing=0.0)
        out["full_res_seconds"] = time.perf_counter() - t0
        out["full_res_dice"] = {name: dice(full.organs == k, truth == k) for k, name in ORGANS}
        out["working_grid_vs_full_res_dice"] = {name: dice(seg.organs == k, full.organs == k) for k, name in ORGANS}
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
