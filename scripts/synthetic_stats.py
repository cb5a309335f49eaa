"""Per split of a synthetic dataset: scans, prevalence of the confounded label, its correlation with fat and the
AUROC of the fat thickness alone; then how strongly a model must read the lesion, relative to the fat, to halve
the confounder's AUROC drop from test to test_shifted (``hirescam_ext.reproduce.analysis.shortcut_score_auroc``).

Usage: python scripts/synthetic_stats.py data/synthetic_demo_v1.4.0 [--drop 78.4]   (any synthetic dataset folder)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hirescam_ext.labels import LABEL_NAMES
from hirescam_ext.reproduce.analysis import lesion_to_fat_ratio_needed, shortcut_score_auroc
from hirescam_ext.synthetic.findings import CONFOUNDED_LABEL

SPLITS = ("training", "validation", "test", "test_shifted")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("folder", help="a synthetic dataset folder (with findings.json)")
    p.add_argument("--drop", type=float, default=None, metavar="POINTS",
                   help="the AUROC drop to halve, in points (default: the fat thickness's own drop)")
    args = p.parse_args(argv)
    findings = json.loads((Path(args.folder) / "findings.json").read_text())
    m = LABEL_NAMES.index(CONFOUNDED_LABEL)
    data = {}  # split -> (fat, labels), for the splits holding both classes of the label
    for split in SPLITS:
        scans = [v for v in findings.values() if v["split"] == split]
        fat = np.array([v["fat_thickness_mm"] for v in scans], dtype=np.float64)
        y = np.array([v["label"][m] for v in scans], dtype=np.float64)
        if len(set(y.tolist())) < 2:  # empty (e.g. --split-fractions 6 1 0 0) or one class: no correlation or AUROC
            print(f"{split:13s} scans {len(scans):4d}  {CONFOUNDED_LABEL}: "
                  + ("none" if not len(scans) else f"prevalence {y.mean():.2f}, one class only"))
            continue
        data[split] = (fat, y)
        corr = float(np.corrcoef(fat, y)[0, 1])
        print(f"{split:13s} scans {len(scans):4d}  {CONFOUNDED_LABEL} prevalence {y.mean():.2f}  corr(fat) {corr:+.2f}"
              f"  AUROC of the fat alone {100 * shortcut_score_auroc(fat, y, 0.0):5.1f}")
    if "test" not in data or "test_shifted" not in data:
        print("no lesion-to-fat ratio: test and test_shifted must both hold scans with and without the label")
        return
    test, shifted = data["test"], data["test_shifted"]
    fat_drop = 100 * (shortcut_score_auroc(*test, 0.0) - shortcut_score_auroc(*shifted, 0.0))
    drop = fat_drop if args.drop is None else args.drop
    ratio = lesion_to_fat_ratio_needed(test, shifted, max_drop=drop / 200.0)
    print(f"the fat alone drops {fat_drop:.1f} points from test to test_shifted; a logit that grows by l with the "
          f"lesion and by f per SD of fat, and reads nothing else, halves a drop of {drop:.1f} points (to "
          f"{drop / 2:.1f}) from l / f = {f'{ratio:.2f}' if ratio is not None else 'more than 10'}")


if __name__ == "__main__":
    main()
