"""Learnability audit of the synthetic generator: per label voxels, contrast, oracle AUROC and a verdict.

Writes ``<out>/learnability_<profile>.json`` and ``.md`` (see :mod:`hirescam_ext.synthetic.audit`).

Usage:
    OMP_NUM_THREADS=1 python scripts/eval_learnability.py --profile tiny --scans 400 --out docs/learnability
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from hirescam_ext.synthetic.audit import run_audit, to_markdown
from hirescam_ext.synthetic.generator import make_config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=("tiny", "small", "demo"), default="tiny")
    ap.add_argument("--scans", type=int, default=300, help="scans generated in memory (default 300)")
    ap.add_argument("--out", default="docs/learnability", help="output folder")
    ap.add_argument("--seed", type=int, default=0, help="dataset seed")
    ap.add_argument("--folds", type=int, default=5, help="cross-validation folds of the oracle")
    ap.add_argument("--tag", default="", help="suffix of the output file names (e.g. the generator version)")
    args = ap.parse_args(argv)

    start = time.time()

    def progress(done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            el = time.time() - start
            eta = el / done * (total - done)
            print(f"\r{done}/{total} scans  {el:.0f} s  (eta {eta:.0f} s)", end="", file=sys.stderr)
            if done == total:
                print(file=sys.stderr)

    config = make_config(args.profile, n_scans=args.scans)
    result = run_audit(config, seed=args.seed, folds=args.folds, progress=progress)
    result["seconds"] = round(time.time() - start, 1)
    command = "OMP_NUM_THREADS=1 python scripts/eval_learnability.py " + " ".join(argv or sys.argv[1:])
    result["command"] = command
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"learnability_{args.profile}{('_' + args.tag) if args.tag else ''}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{stem}.md").write_text(to_markdown(result, command=command, title=f"Learnability audit: {args.profile}"))
    for lab, e in result["labels"].items():
        auc = e["oracle_auroc"]
        print(f"{lab:34s} prev {e['prevalence']:.2f}  voxels {e['voxels_median']}  AUROC {auc}  {e['verdict']}")
    print(f"wrote {out / stem}.json/.md in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
