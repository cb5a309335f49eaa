"""How far the densitometry branch's band shares move when the same patients are made another way (prints JSON).

The bundle prepares every scan by resampling it to the model's grid. A synthetic scan rendered on that grid (the
``tiny`` profile, 5.8 mm) and the same patient rendered finer (``--render``, default ``demo``: 2.9 mm) and resampled
by the bundle's own preprocessing differ in noise (averaged down) and at every tissue edge (partial volume). This
script measures what that does to :class:`~hirescam_ext.networks.density_bands.DensityBands`' per-cell band shares,
for each in-plane smoothing width of the branch:

1. **shift**: for each band and attention cell (4 x 4), the mean share over ``--scans`` patients of the resampled
   renderings minus that of the on-grid renderings, in units of the on-grid shares' spread across patients; the
   mean of its absolute value per band and over all bands (0: the branch sees the same thing; 1: a shift as large
   as the difference between patients);
2. **probe** (``--probe-scans`` > 0): how much of a finding the shares hold: a logistic regression (L2, LBFGS) on
   the 304 mean shares (19 bands x 16 cells, averaged over the slice triplets) of on-grid scans of dataset seed 1,
   fitted on the first two thirds, test AUROC on the rest.

Usage (from the repository root; docs/TRAINING.md has the numbers)::

    python scripts/eval_band_shift.py --scans 30 --probe-scans 900 --sigmas 0 0.75 1 1.5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from hirescam_ext.labels import LABEL_NAMES
from hirescam_ext.metrics.auroc import compute_multilabel_auroc
from hirescam_ext.networks.density_bands import DENSITY_BAND_CENTERS_HU, DensityBands
from hirescam_ext.synthetic.generator import PROFILES, generate_case, make_config
from hirescam_ext.transforms.intensity import hu_window
from hirescam_ext.transforms.preprocessing import prepare_hu_volume

HU_RANGE, CENTER, GRID = (-1000.0, 800.0), -0.449, (4, 4)
PROBE_LABELS = (
    "lung_groundglass", "lung_emphysema", "heart_pacemaker_or_defib", "lung_atelectasis", "lung_pleural_effusion",
    "heart_pericardial_effusion", "lung_consolidation", "lung_mass",
)  # fmt: skip


def windowed(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """HU volume ``[X, Y, Z]`` in the bundle's encoding (its ``HUWindowd``)."""
    return hu_window(torch.as_tensor(image).float(), HU_RANGE, center=CENTER)


def cell_shares(volume: torch.Tensor, bands: DensityBands) -> torch.Tensor:
    """Windowed ``[X, Y, Z]`` -> band shares ``[K, D1, D2]`` of each cell, averaged over the slice triplets."""
    x, y, z = volume.shape
    triplets = volume[:, :, : z - z % 3].permute(2, 0, 1).reshape(-1, 3, x, y)
    return bands.fractions(triplets, list(GRID)).mean(0)


def shift(on_grid: list[torch.Tensor], resampled: list[torch.Tensor], sigma: float) -> dict:
    bands = DensityBands(smoothing=sigma)
    a = torch.stack([cell_shares(v, bands) for v in on_grid])
    b = torch.stack([cell_shares(v, bands) for v in resampled])
    z = (b.mean(0) - a.mean(0)) / (a.std(0) + 1e-4)
    per_band = z.abs().mean(dim=(1, 2))
    return {"mean_abs_z": round(float(per_band.mean()), 3),
            "per_band": {f"{c:g}": round(float(v), 2) for c, v in zip(DENSITY_BAND_CENTERS_HU, per_band)}}


def probe(volumes: list[torch.Tensor], labels: torch.Tensor, sigma: float, fit: int) -> dict:
    bands = DensityBands(smoothing=sigma)
    f = torch.stack([cell_shares(v, bands).reshape(-1) for v in volumes])
    f = (f - f[:fit].mean(0)) / (f[:fit].std(0) + 1e-4)
    out = {}
    for name in PROBE_LABELS:
        j = LABEL_NAMES.index(name)
        w = torch.zeros(f.shape[1], requires_grad=True)
        b = torch.zeros(1, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=200)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            logits = f[:fit] @ w + b
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels[:fit, j])
            loss = loss + 1e-2 * w.square().sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            scores = (f[fit:] @ w).view(-1, 1)
        value = float(compute_multilabel_auroc(scores, labels[fit:, j : j + 1]).mean)
        out[name] = round(value, 3) if np.isfinite(value) else None  # None: one class only in the test part
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scans", type=int, default=30, help="patients rendered both ways for the shift")
    p.add_argument("--render", default="demo", choices=sorted(PROFILES), help="the finer profile, resampled")
    p.add_argument("--probe-scans", type=int, default=900, help="on-grid scans of seed 1 for the probe (0: none)")
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.75, 1.0, 1.5], help="smoothing widths (pixels)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    tiny, fine = make_config("tiny"), make_config(args.render)
    on_grid, resampled = [], []
    for i in range(args.scans):
        on_grid.append(windowed(generate_case(i, 0, config=tiny).image))
        case = generate_case(i, 0, config=fine)
        resampled.append(windowed(prepare_hu_volume(case.image, case.affine, tiny.spacing, tiny.shape)))
    report: dict = {"scans": args.scans, "render": args.render, "grid": list(GRID),
                    "shift": {f"{s:g}": shift(on_grid, resampled, s) for s in args.sigmas}}
    if args.probe_scans > 0:
        config = make_config("tiny", n_scans=6000)
        cases = [generate_case(i, 1, config=config) for i in range(args.probe_scans)]
        labels = torch.tensor(np.array([c.label for c in cases]), dtype=torch.float32)
        volumes = [windowed(c.image) for c in cases]
        fit = 2 * args.probe_scans // 3
        report["probe"] = {"fit_scans": fit, "test_scans": args.probe_scans - fit,
                           "auroc": {f"{s:g}": probe(volumes, labels, s, fit) for s in args.sigmas}}
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
