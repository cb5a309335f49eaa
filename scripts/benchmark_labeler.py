"""Throughput of the report labeler on the CT-RATE reports, printed as JSON.

Usage (one core, as docs/LABELER.md reports it):
    OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python scripts/benchmark_labeler.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from hirescam_ext.labeling import ReportLabeler
from hirescam_ext.labeling.benchmarks import load_ctrate


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = Path(__file__).resolve().parents[1]
    default_csv = root / ".." / "shared" / "datasets" / "ctrate-labeled-reports" / "train.csv"
    parser.add_argument("--csv", default=str(default_csv))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    _, texts, _ = load_ctrate(args.csv)
    t0 = time.perf_counter()
    labeler = ReportLabeler()
    init_s = time.perf_counter() - t0
    list(labeler.label_many(texts[:50]))  # warm-up
    runs = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        n = sum(1 for _ in labeler.label_many(texts))
        runs.append(n / (time.perf_counter() - t))
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    print(json.dumps({
        "reports": len(texts),
        "chars_total": sum(len(t) for t in texts),
        "init_seconds": round(init_s, 2),
        "reports_per_second": [round(r, 1) for r in runs],
        "best_reports_per_second": round(max(runs), 1),
        "cpu_affinity": affinity,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
