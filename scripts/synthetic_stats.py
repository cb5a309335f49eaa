"""Per split of a synthetic dataset: scans, prevalence of the confounded label, and its correlation with fat.

Usage: python scripts/synthetic_stats.py data/synthetic_demo_v1.3.0   (any synthetic dataset folder)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from hirescam_ext.synthetic.findings import CONFOUNDED_LABEL
from hirescam_ext.labels import LABEL_NAMES


def main(folder: str) -> None:
    findings = json.loads((Path(folder) / "findings.json").read_text())
    m = LABEL_NAMES.index(CONFOUNDED_LABEL)
    for split in ("training", "validation", "test", "test_shifted"):
        scans = [v for v in findings.values() if v["split"] == split]
        fat = np.array([v["fat_thickness_mm"] for v in scans])
        y = np.array([v["label"][m] for v in scans])
        corr = float(np.corrcoef(fat, y)[0, 1]) if y.std() > 0 else float("nan")
        print(f"{split:13s} scans {len(scans):4d}  {CONFOUNDED_LABEL} prevalence {y.mean():.2f}  corr(fat) {corr:+.2f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
