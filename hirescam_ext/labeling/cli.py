"""``hirescam label INPUT --out DIR``: label free-text chest CT reports (80 labels, locations, evidence).

INPUT is a CSV file with one report per row (``--text-column``, ``--id-column``) or a folder of ``.txt`` reports
(the file stem is the accession). Outputs, each written atomically:

* ``labels.csv`` -- ``accession`` + the 80 label columns (0/1), one row per labelled report;
* ``locations/<accession>.csv`` -- the abnormality x location table of each report (docs/ARCHITECTURE.md format);
* ``evidence.jsonl`` -- one JSON object per report: positive labels, evidence (sentence, character spans), sentences;
* ``failures.csv`` -- ``accession,problem`` for reports that could not be labelled (empty text, unreadable file).

Bytes that are not UTF-8 are decoded with replacement characters and reported as a warning (the report is still
labelled; ``--strict-utf8`` turns this into a failure instead). The exit status is 0 when every report was labelled,
1 when some failed (the others are still written), 2 for unusable input (missing file, missing column).

Example:
    >>> from hirescam_ext.labeling.cli import main
    >>> main(["reports.csv", "--out", "labels_out"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from hirescam_ext.labels import LABEL_NAMES
from hirescam_ext.utils.errors import InputError
from hirescam_ext.utils.io import atomic_write, ensure_writable_dir, write_text_atomic

__all__ = ["main", "build_parser", "read_reports"]

_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hirescam label",
        description="Label chest CT reports with the 80 RAD-ChestCT labels, locations and evidence (rule-based).",
    )
    parser.add_argument("input", help="CSV file with a report column, or a folder of .txt reports")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--text-column", default="report", help="CSV column holding the report text (default: report)")
    parser.add_argument("--id-column", default=None, help="CSV column holding the accession (default: row number)")
    parser.add_argument("--vocab-dir", default=None, help="folder with a custom vocabulary (JSON files)")
    parser.add_argument("--n-process", type=int, default=1, help="spaCy worker processes (default 1)")
    parser.add_argument("--strict-utf8", action="store_true", help="fail reports that are not valid UTF-8")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _decode(raw: bytes, strict: bool) -> tuple[str | None, str | None]:
    """(text, warning) -- text is None when strict decoding fails."""
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        if strict:
            return None, f"not valid UTF-8 ({exc.reason} at byte {exc.start})"
        return raw.decode("utf-8", errors="replace"), f"not valid UTF-8 at byte {exc.start}: decoded with replacement"


def read_reports(
    source: str | os.PathLike, text_column: str = "report", id_column: str | None = None, strict_utf8: bool = False
) -> Iterator[tuple[str, str | None, str | None]]:
    """Yield ``(accession, text or None, problem or None)`` for every report of a CSV file or a .txt folder.

    Raises:
        InputError: the input does not exist, the CSV lacks the columns, or the folder has no .txt file.
    """
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".txt" and p.is_file())
        if not files:
            raise InputError(path, "folder holds no .txt reports")
        for f in files:
            try:
                raw = f.read_bytes()
            except OSError as exc:
                yield f.stem, None, f"cannot read file ({exc.strerror})"
                continue
            text, problem = _decode(raw, strict_utf8)
            yield f.stem, text, problem
        return
    if not path.is_file():
        raise InputError(path, "input not found (expected a CSV file or a folder of .txt reports)")
    text_all, problem = _decode(path.read_bytes(), strict_utf8)
    if text_all is None:
        raise InputError(path, problem or "cannot decode")
    if problem:
        print(f"hirescam label: warning: {path}: {problem}", file=sys.stderr)
    reader = csv.DictReader(io.StringIO(text_all, newline=""))
    columns = reader.fieldnames or []
    if text_column not in columns:
        raise InputError(path, f"no column {text_column!r} (columns: {columns}); choose one with --text-column")
    if id_column is not None and id_column not in columns:
        raise InputError(path, f"no column {id_column!r} (columns: {columns}); choose one with --id-column")
    for i, row in enumerate(reader):
        acc = (row.get(id_column) or "").strip() if id_column else str(i)
        text = row.get(text_column)
        yield acc or f"row{i}", text, ("\ufffd" in (text or "") and problem) or None


def _safe_name(acc: str) -> str:
    return _SAFE_ID.sub("_", acc).strip("._") or "report"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hirescam label``; returns the exit status (0 ok, 1 some reports failed, 2 unusable input)."""
    args = build_parser().parse_args(argv)
    try:
        items = list(read_reports(args.input, args.text_column, args.id_column, args.strict_utf8))
    except InputError as exc:
        print(f"hirescam label: error: {exc}", file=sys.stderr)
        return 2
    from tqdm import tqdm

    from hirescam_ext.labeling.labeler import ReportLabeler

    try:
        labeler = ReportLabeler(vocab_dir=args.vocab_dir)
    except InputError as exc:
        print(f"hirescam label: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        ensure_writable_dir(out / "locations")
    except InputError as exc:
        print(f"hirescam label: error: {exc}", file=sys.stderr)
        return 2

    failures: list[tuple[str, str]] = []
    warnings: list[tuple[str, str]] = []
    good: list[tuple[str, str]] = []
    used: dict[str, int] = {}
    seen: set[str] = set()
    keep = []
    for acc, text, problem in items:
        if text is None:
            failures.append((acc, problem or "no text"))
            continue
        if not text.strip():
            failures.append((acc, "empty report"))
            continue
        if acc in seen:  # labels.csv holds one row per accession; a second report would make it unusable
            failures.append((acc, "duplicated accession: only its first report was labelled"))
            continue
        seen.add(acc)
        keep.append((acc, text))
        if problem:
            warnings.append((acc, problem))
            print(f"hirescam label: warning: {acc}: {problem}", file=sys.stderr)
        name = _safe_name(acc)
        if name in used:  # keep one location file per report even when accessions collide after sanitising
            used[name] += 1
            name = f"{name}_{used[name]}"
        else:
            used[name] = 0
        good.append((acc, name))

    texts = [t for _, t in keep]
    label_rows = io.StringIO()
    writer = csv.writer(label_rows, lineterminator="\n")
    writer.writerow(["accession", *LABEL_NAMES])
    evidence_lines = []
    results = labeler.label_many(texts, n_process=max(1, args.n_process))
    for (acc, name), result in tqdm(
        zip(good, results), total=len(good), desc="labelling", unit="report", disable=args.no_progress
    ):
        writer.writerow([acc, *(result.labels[n] for n in LABEL_NAMES)])
        result.to_csv(out / "locations" / f"{name}.csv")
        record = {
            "accession": acc,
            "positive_labels": result.positive_labels,
            "abnormalities": [a for a, v in result.abnormalities.items() if v],
            "evidence": result.evidence_records(),
            "sentences": [
                {"text": s.text, "start": s.start, "end": s.end, "abnormal": s.abnormal} for s in result.sentences
            ],
        }
        evidence_lines.append(json.dumps(record, ensure_ascii=False))
    write_text_atomic(out / "labels.csv", label_rows.getvalue())
    write_text_atomic(out / "evidence.jsonl", "\n".join(evidence_lines) + ("\n" if evidence_lines else ""))
    with atomic_write(out / "failures.csv") as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        fw = csv.writer(f, lineterminator="\n")
        fw.writerow(["accession", "problem"])
        fw.writerows(failures)
    summary = {
        "input": str(args.input),
        "out": str(out),
        "reports": len(items),
        "labelled": len(good),
        "failed": len(failures),
        "warnings": len(warnings),
        "failures": [{"accession": a, "problem": p} for a, p in failures],
    }
    print(json.dumps(summary, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
