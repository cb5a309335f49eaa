"""``hirescam datalist``: write the data-list JSON of a folder of CTs and a labels CSV.

The command line of :func:`~hirescam_ext.data.datalist.make_datalist`: one item per scan with its 80 labels and, when
the folders are given, its organ map and location table; scans are split by seeded fractions. Bad input (a missing
folder, a scan without labels, a malformed fraction) ends in one line ``hirescam datalist: <file>: <problem>`` and exit
status 2.

Example:
    $ hirescam datalist --images my_cts/ --labels labels.csv --organs my_cts/organs --out my_cts/datalist.json \\
        --split-fractions training=0.7 validation=0.15 test=0.15 --seed 1
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from hirescam_ext.utils.errors import InputError

__all__ = ["EXIT_USAGE", "main", "parse_fractions"]

PROG = "hirescam datalist"
#: exit status of bad input, as argparse uses for usage errors
EXIT_USAGE = 2


def parse_fractions(pairs: Sequence[str]) -> dict[str, float]:
    """``["training=0.8", "validation=0.2"]`` -> ``{"training": 0.8, "validation": 0.2}``.

    Raises:
        InputError: a pair without ``=``, a value that is not a number, or a split named twice.
    """
    fractions: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InputError(None, f"--split-fractions takes NAME=FRACTION pairs (training=0.8), got {pair!r}")
        if name in fractions:
            raise InputError(None, f"--split-fractions names the split {name!r} twice")
        try:
            fractions[name] = float(value)
        except ValueError as exc:
            raise InputError(None, f"--split-fractions: {value!r} for {name!r} is not a number") from exc
    return fractions


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Write a data-list JSON (training/validation/test items with the 80 labels) for a folder of CT "
        "scans (NIfTI, NRRD, MHA, .npz files, DICOM series folders) and a labels CSV (accession + 80 label columns).",
    )
    parser.add_argument("--images", required=True, help="folder of CT scans; a scan's accession is its name")
    parser.add_argument("--labels", required=True, help="labels CSV: accession and the 80 label columns")
    parser.add_argument("--organs", help="folder of <accession>.nii.gz organ maps (hirescam segment / regions)")
    parser.add_argument("--locations", help="folder of <accession>.csv location tables (hirescam label / regions)")
    parser.add_argument("--reports", help="folder of <accession>.txt reports")
    parser.add_argument("--out", required=True, help="the JSON to write; item paths are relative to its folder")
    parser.add_argument(
        "--split-fractions",
        nargs="+",
        metavar="NAME=FRACTION",
        help="split fractions (default training=0.8 validation=0.1 test=0.1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="shuffling seed of the split (default 0)")
    parser.add_argument(
        "--skip-unlabeled", action="store_true", help="leave out scans without a row in the CSV (default: error)"
    )
    parser.add_argument("--ignore-extra-columns", action="store_true", help="ignore CSV columns that are not labels")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return parser


def _check_folder(path: str | None, option: str) -> None:
    if path is not None and not os.path.isdir(path):
        raise InputError(path, f"{option}: not a folder" if os.path.exists(path) else f"{option}: folder not found")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hirescam datalist``; returns the exit status (0 written, 2 bad input)."""
    from hirescam_ext.data.datalist import make_datalist

    args = _parser().parse_args(argv)
    try:
        for path, option in ((args.organs, "--organs"), (args.locations, "--locations"), (args.reports, "--reports")):
            _check_folder(path, option)
        if not os.path.isfile(args.labels):
            raise InputError(args.labels, "--labels: labels CSV not found")
        splits = parse_fractions(args.split_fractions) if args.split_fractions else None
        lists = make_datalist(
            args.images,
            args.labels,
            args.out,
            organs_dir=args.organs,
            locations_dir=args.locations,
            reports_dir=args.reports,
            splits=splits,
            seed=args.seed,
            missing_labels="skip" if args.skip_unlabeled else "error",
            extra_columns="ignore" if args.ignore_extra_columns else "error",
        )
    except (InputError, ValueError) as exc:
        if args.debug:
            raise
        print(f"{PROG}: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
    counts = ", ".join(f"{name} {len(items)}" for name, items in lists.items())
    total = sum(len(items) for items in lists.values())
    print(f"{args.out}: {total} scans ({counts})")
    for key, folder in (("organs", args.organs), ("locations", args.locations), ("report", args.reports)):
        if folder is not None:
            found = sum(key in item for items in lists.values() for item in items)
            print(f"  {key}: {found} of {total} scans have a file in {folder}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
