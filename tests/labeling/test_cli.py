"""The ``hirescam label`` command."""

from __future__ import annotations

import csv
import json

from hirescam_ext.labeling.cli import main
from hirescam_ext.labels import LABEL_NAMES, LOCATION_NAMES


def _write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["acc", "findings"])
        writer.writerows(rows)


def test_cli_csv_writes_outputs_and_reports_bad_item(tmp_path, capsys):
    src = tmp_path / "reports.csv"
    _write_csv(src, [("A1", "Nodule in the right upper lobe. No effusion."), ("A2", "   "), ("A3", "Cardiomegaly.")])
    out = tmp_path / "out"
    status = main([str(src), "--out", str(out), "--text-column", "findings", "--id-column", "acc", "--no-progress"])
    assert status == 1  # one report failed
    with open(out / "labels.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["accession"] for r in rows] == ["A1", "A3"]
    assert list(rows[0]) == ["accession", *LABEL_NAMES]
    assert rows[0]["lung_nodule"] == "1" and rows[1]["heart_cardiomegaly"] == "1"
    with open(out / "locations" / "A1.csv", encoding="utf-8") as f:
        table = {r["abnormality"]: r for r in csv.DictReader(f)}
    assert list(next(iter(table.values()))) == ["abnormality", *LOCATION_NAMES]
    assert table["lung_nodule"]["right_upper"] == "1"
    records = [json.loads(line) for line in (out / "evidence.jsonl").read_text().splitlines()]
    assert records[0]["accession"] == "A1" and records[0]["evidence"][0]["term"] == "Nodule"
    with open(out / "failures.csv", encoding="utf-8") as f:
        failures = list(csv.DictReader(f))
    assert failures == [{"accession": "A2", "problem": "empty report"}]
    summary = json.loads(capsys.readouterr().out)
    assert summary["failed"] == 1 and summary["labelled"] == 2


def test_cli_folder_decodes_bad_bytes_with_warning(tmp_path, capsys):
    folder = tmp_path / "txt"
    folder.mkdir()
    (folder / "r1.txt").write_bytes(b"Pleural effusion \xff on the left.")
    (folder / "r2.txt").write_text("No nodule.", encoding="utf-8")
    out = tmp_path / "out"
    assert main([str(folder), "--out", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "r1" in captured.err and "UTF-8" in captured.err
    assert (out / "locations" / "r1.csv").is_file() and (out / "locations" / "r2.csv").is_file()


def test_cli_strict_utf8_fails_the_bad_file(tmp_path):
    folder = tmp_path / "txt"
    folder.mkdir()
    (folder / "bad.txt").write_bytes(b"\xff\xfe nodule")
    (folder / "good.txt").write_text("Nodule.", encoding="utf-8")
    out = tmp_path / "out"
    assert main([str(folder), "--out", str(out), "--strict-utf8", "--no-progress"]) == 1
    assert "bad" in (out / "failures.csv").read_text()


def test_cli_missing_column_is_a_clear_error(tmp_path, capsys):
    src = tmp_path / "reports.csv"
    _write_csv(src, [("A1", "Nodule.")])
    assert main([str(src), "--out", str(tmp_path / "o"), "--text-column", "report"]) == 2
    err = capsys.readouterr().err
    assert "reports.csv" in err and "'report'" in err
