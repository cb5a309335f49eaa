"""Score the rule-based report labeler and print JSON (docs/LABELER.md quotes its output).

* CT-RATE (800 real chest CT reports, 18 manual labels): macro/per-label F1 on the development part
  (reports 0-499), the check part (500-799) and all 800.
* SARLE Open-i sentences: normal/abnormal sentence accuracy.
* Synthetic reports (``hirescam_ext.synthetic.generator.generate_case``, when present): F1 of the 80 labels and of the
  location-table cells recovered from the generated report text.

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python scripts/eval_labeler.py [--datasets ../shared/datasets] [--synthetic 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from hirescam_ext.labeling import ReportLabeler
from hirescam_ext.labeling.benchmarks import evaluate_ctrate, evaluate_openi_sentences
from hirescam_ext.labels import LABEL_NAMES, LOCATION_NAMES


def _synthetic(labeler: ReportLabeler, n: int, seed: int) -> dict:
    try:
        from hirescam_ext.synthetic.generator import generate_case
    except Exception as exc:  # noqa: BLE001 - the generator is another module and may not exist yet
        return {"skipped": f"hirescam_ext.synthetic.generator.generate_case unavailable ({type(exc).__name__}: {exc})"}
    tp = fp = fn = 0
    ltp = lfp = lfn = 0
    failures = []
    for i in range(n):
        case = generate_case(i, seed=seed, shape=(48, 48, 32))
        text, truth, table = _case_fields(case)
        res = labeler.label(text)
        pred = res.label_vector.astype(bool)
        truth = np.asarray(truth).astype(bool)
        tp += int((pred & truth).sum())
        fp += int((pred & ~truth).sum())
        fn += int((~pred & truth).sum())
        if table is not None:
            t = np.asarray(table).astype(bool)
            p = res.locations.astype(bool)
            ltp += int((p & t).sum())
            lfp += int((p & ~t).sum())
            lfn += int((~p & t).sum())
        else:
            t = p = None
        if (pred != truth).any() or (t is not None and (p != t).any()):
            if len(failures) < 20:
                failures.append(
                    {
                        "index": i,
                        "report": text,
                        "missed_labels": [LABEL_NAMES[j] for j in np.flatnonzero(truth & ~pred)],
                        "extra_labels": [LABEL_NAMES[j] for j in np.flatnonzero(pred & ~truth)],
                        "missed_cells": [] if t is None else [
                            f"{LABEL_NAMES[a]}@{LOCATION_NAMES[b]}" for a, b in zip(*np.nonzero(t & ~p))
                        ][:10],
                        "extra_cells": [] if t is None else [
                            f"{LABEL_NAMES[a]}@{LOCATION_NAMES[b]}" for a, b in zip(*np.nonzero(p & ~t))
                        ][:10],
                    }
                )

    def f1(a, b, c):
        return round(2 * a / (2 * a + b + c), 4) if a + b + c else 1.0

    return {
        "n_cases": n,
        "seed": seed,
        "label_f1": f1(tp, fp, fn),
        "label_counts": {"tp": tp, "fp": fp, "fn": fn},
        "location_cell_f1": f1(ltp, lfp, lfn) if ltp + lfp + lfn else None,
        "location_counts": {"tp": ltp, "fp": lfp, "fn": lfn},
        "failures": failures,
    }


def _case_fields(case):
    """Read (report text, label vector, location table or None) from a generated case (dict or object)."""
    get = case.get if isinstance(case, dict) else (lambda k, d=None: getattr(case, k, d))
    text = get("report") or get("report_text") or get("text")
    labels = get("labels")
    if labels is None:
        labels = get("label")
    if isinstance(labels, dict):
        labels = [labels[n] for n in LABEL_NAMES]
    table = get("locations")
    if isinstance(table, dict):
        table = [[int(table.get(n, {}).get(loc, 0)) for loc in LOCATION_NAMES] for n in LABEL_NAMES]
    return text, labels, table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--datasets", default=str(root / ".." / "shared" / "datasets"))
    parser.add_argument("--synthetic", type=int, default=200, help="number of synthetic cases (0 to skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-label", action="store_true", help="include per-label precision/recall/F1")
    args = parser.parse_args(argv)
    data = Path(args.datasets)
    labeler = ReportLabeler()
    out: dict = {"command": "scripts/eval_labeler.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    t0 = time.perf_counter()
    ct = data / "ctrate-labeled-reports" / "train.csv"
    if ct.is_file():
        for name, (lo, hi) in {"dev_0_500": (0, 500), "check_500_800": (500, 800), "all_800": (0, None)}.items():
            res = evaluate_ctrate(labeler, ct, lo, hi)
            per = res.pop("per_label")
            res["per_label_f1"] = {k: v["f1"] for k, v in per.items()}
            if args.per_label:
                res["per_label"] = per
            out.setdefault("ctrate", {})[name] = res
    else:
        out["ctrate"] = {"skipped": f"{ct} not found"}
    op = data / "sarle-openi-cxr" / "openi_count_label_sent.csv"
    if op.is_file():
        out["openi_sentences"] = evaluate_openi_sentences(labeler, op)
        out["openi_sentences_weighted"] = evaluate_openi_sentences(labeler, op, weighted=True)
    else:
        out["openi_sentences"] = {"skipped": f"{op} not found"}
    if args.synthetic > 0:
        out["synthetic"] = _synthetic(labeler, args.synthetic, args.seed)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
