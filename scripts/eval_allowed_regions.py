"""Does G_true hold the lesions? Lesion coverage of the allowed regions on the attention grid; prints JSON.

For every rendered finding of the synthetic benchmark (``hirescam_ext.synthetic.generator.generate_case``, which knows
each lesion's voxels), G_true of the finding's label is built with ``hirescam_ext.regions.allowed_regions`` from
the true labels and location table, once from the generator's organ map ("truth") and once from our HU
segmentation ("ours"), for several grids and downsampling settings. Reported per label, for the lung and the
heart groups and overall:

* ``coverage``: fraction of the lesion's grid cells that G_true allows (1.0: the mask loss never penalises
  attention on the lesion; ``hirescam_ext.regions.coverage.lesion_coverage``);
* ``allowed``: fraction of the grid G_true allows for that label (how loose the constraint is).

With ``--render-profile`` each scan is rendered on that profile's finer grid and resampled to ``--profile``'s, the
CT (bilinear), the organ map and the lesion masks (nearest) through one chain
(``hirescam_ext.transforms.preprocessing.prepare_volumes``), as ``scripts/train_reference.py --render-profile``
prepare them; "ours" segments the scan at its own (finer) resolution and resamples that organ map with the others,
as the bundle does (``hirescam regions`` on the scan, then the preprocessing). The cases follow the split plan of a
benchmark of ``--scans`` patients (default: the profile's own size), on both grids: the split decides whether a case
is in ``test_shifted``, where the confounded label is drawn differently.

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python scripts/eval_allowed_regions.py [--cases 40] [--seed 0] [--profile demo]
        [--render-profile demo] [--scans N] [--grids 6x6,4x4,2x2] [--settings nearest,nearest+1,area0.5,area0.1]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from typing import Any

import numpy as np

from hirescam_ext.labels import LABEL_NAMES
from hirescam_ext.regions.allowed import allowed_regions
from hirescam_ext.regions.coverage import allowed_fraction, lesion_coverage
from hirescam_ext.regions.layout import SLICES_PER_TRIPLET


def parse_setting(text: str) -> dict[str, Any]:
    """``nearest``, ``nearest+1`` (one cell of dilation), ``area0.5`` (area mode, threshold 0.5), ``area0.1+1``."""
    base, _, dil = text.partition("+")
    kw: dict[str, Any] = {"dilation": int(dil) if dil else 0}
    if base == "nearest":
        kw["mode"] = "nearest"
    elif base.startswith("area"):
        kw["mode"] = "area"
        kw["area_threshold"] = float(base[4:] or 0.5)
        if not 0.0 < kw["area_threshold"] <= 1.0:
            raise ValueError(f"setting {text!r}: the area threshold must lie in (0, 1]")
    else:
        raise ValueError(f"unknown setting {text!r}: use nearest[+k] or area<threshold>[+k]")
    return kw


def summarize(values: list[float]) -> dict[str, float] | None:
    vals = [v for v in values if np.isfinite(v)]
    return {"mean": round(float(np.mean(vals)), 4), "n": len(vals)} if vals else None


def evaluate(
    n_cases: int, seed: int, grids: list[tuple[int, int]], settings: list[str], profile: str = "demo",
    render_profile: str | None = None, n_scans: int | None = None,
) -> dict[str, Any]:
    from hirescam_ext.synthetic.generator import generate_case, make_config
    from hirescam_ext.segmentation import segment_organs
    from hirescam_ext.transforms.preprocessing import prepare_volumes

    config = make_config(profile, n_scans=n_scans) if n_scans else make_config(profile)
    # the same patients on both grids: the split plan (and so each case's findings) follows one benchmark size
    render = make_config(render_profile, n_scans=config.n_scans) if render_profile not in (None, profile) else None

    index = {name: i for i, name in enumerate(LABEL_NAMES)}
    cov: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    loose: dict[tuple, list[float]] = defaultdict(list)
    n_findings = 0
    for i in range(n_cases):
        case = generate_case(i, seed, config=render or config)
        if not case.findings:
            continue
        image, truth, lesions = case.image, case.organs, case.lesions
        ours = segment_organs(image, affine=case.affine).organs  # on the scan as it is, as `hirescam regions` does
        if render is not None:  # on the network grid, as the bundle prepares the scan and the organ maps made on it
            hu, maps = prepare_volumes(image, case.affine, config.spacing, config.shape,
                                       {"organs": truth, "ours": ours, "lesions": np.moveaxis(lesions, 3, 0)})
            image, truth, ours = hu.numpy(), maps["organs"].numpy(), maps["ours"].numpy()
            lesions = np.moveaxis(maps["lesions"].numpy(), 0, 3)
        organs = {"truth": truth, "ours": ours}
        h = image.shape[2] // SLICES_PER_TRIPLET
        for source, organ_map in organs.items():
            for d1, d2 in grids:
                for setting in settings:
                    g_true = allowed_regions(organ_map, case.label, case.locations, grid=(d1, d2, h),
                                             **parse_setting(setting))
                    key = (source, f"{d1}x{d2}", setting)
                    for k, finding in enumerate(case.findings):
                        lesion = lesions[..., k] > 0
                        if finding.label not in index or not lesion.any():
                            continue
                        region = g_true[index[finding.label]] > 0.5
                        cov[key][finding.label].append(lesion_coverage(region, lesion))
                        loose[key].append(allowed_fraction(region))
        n_findings += sum(1 for k, f in enumerate(case.findings) if f.label in index and lesions[..., k].any())
        print(f"case {i + 1}/{n_cases}", file=sys.stderr, flush=True)
    out: dict[str, Any] = {"cases": n_cases, "seed": seed, "profile": profile, "shape": list(config.shape),
                           "render_profile": render_profile, "scans": config.n_scans, "findings": n_findings,
                           "results": {}}
    for (source, grid, setting), per_label in sorted(cov.items()):
        lung = [v for name, vs in per_label.items() if name.startswith("lung_") for v in vs]
        heart = [v for name, vs in per_label.items() if not name.startswith("lung_") for v in vs]
        out["results"].setdefault(source, {}).setdefault(grid, {})[setting] = {
            "coverage_all": summarize(lung + heart),
            "coverage_lung": summarize(lung),
            "coverage_heart": summarize(heart),
            "allowed": summarize(loose[(source, grid, setting)]),
            "coverage_by_label": {name: summarize(vs) for name, vs in sorted(per_label.items())},
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", default="demo", help="synthetic profile (demo: 128x128x96, tiny: 64x64x48)")
    parser.add_argument("--render-profile", default=None,
                        help="render on this profile's grid and resample to --profile's (as train_reference does)")
    parser.add_argument("--scans", type=int, default=None,
                        help="size of the benchmark whose split plan the cases follow (default: the profile's own)")
    parser.add_argument("--grids", default="6x6,4x4,2x2", help="in-plane attention grids D1xD2 (H = slices // 3)")
    parser.add_argument("--settings", default="nearest,nearest+1,area0.5,area0.1")
    args = parser.parse_args(argv)
    grids = []
    for g in (g for g in args.grids.split(",") if g):
        parts = g.lower().split("x")
        if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
            parser.error(f"--grids: {g!r} is not D1xD2 (e.g. 6x6)")
        grids.append((int(parts[0]), int(parts[1])))
    settings = [s for s in args.settings.split(",") if s]
    for s in settings:
        try:
            parse_setting(s)
        except ValueError as err:
            parser.error(f"--settings: {err}")
    if args.scans is not None and args.scans < 1:
        parser.error(f"--scans must be positive, got {args.scans}")
    json.dump(evaluate(args.cases, args.seed, grids, settings, args.profile, args.render_profile, args.scans),
              sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
