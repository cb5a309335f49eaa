"""The planted shortcut over training: score saved checkpoints on a synthetic dataset's test splits (prints JSON).

For each checkpoint (a run's per-epoch weights, kept with ``--keep_epoch_every 1`` in ``models/epochs/``, or the
final models of several runs): the confounded label's (atherosclerosis) AUROC on ``test`` and ``test_shifted``, the
drop between them, the logit's fat and lesion effects and the mean AUROC over the rendered findings
(:func:`hirescam_ext.reproduce.shortcut.shortcut_over_checkpoints`). Every scan is prepared once for all
checkpoints.

Usage (from the repository root; docs/REPRODUCE.md has the numbers)::

    python -m monai.bundle run --config_file configs/train.json --dataset_dir DATA --keep_epoch_every 1 ...
    python scripts/eval_shortcut.py --dataset DATA --checkpoints RUN/models/epochs/epoch_*.pt \\
        --out shortcut.json --markdown shortcut.md
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hirescam_ext.reproduce.shortcut import shortcut_over_checkpoints, shortcut_table
from hirescam_ext.utils.errors import InputError
from hirescam_ext.utils.io import write_json_atomic


def _natural(path: str) -> list:
    """Sort key that puts ``epoch_9.pt`` before ``epoch_10.pt``."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", required=True, help="a hirescam synth folder (datalist.json, findings.json)")
    p.add_argument("--checkpoints", nargs="+", required=True, help="checkpoints with model settings")
    p.add_argument("--splits", nargs="+", default=["test", "test_shifted"], help="splits to score")
    p.add_argument("--max-scans", type=int, default=None, help="the first N scans of each split (default: all)")
    p.add_argument("--sort", action="store_true", help="order the checkpoints by name, numbers as numbers")
    p.add_argument("--out", default=None, help="also write the JSON here")
    p.add_argument("--markdown", default=None, help="also write a Markdown table here")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    checkpoints = sorted(args.checkpoints, key=_natural) if args.sort else args.checkpoints
    try:
        result = shortcut_over_checkpoints(checkpoints, args.dataset, splits=args.splits, max_scans=args.max_scans,
                                           progress=not args.no_progress)
    except InputError as exc:
        print(f"eval_shortcut: {exc}", file=sys.stderr)
        return 2
    if args.out:
        write_json_atomic(args.out, result)
    if args.markdown:
        Path(args.markdown).write_text(shortcut_table(result), encoding="utf-8")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
