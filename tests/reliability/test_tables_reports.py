"""Bad label tables, location tables, data lists and reports: a clear ``InputError`` naming the file and the problem,
or, in the ``hirescam label`` batch job, the bad report skipped and listed while the others are written."""

from __future__ import annotations

import csv
import json
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hirescam_ext.data.datalist import load_datalist
from hirescam_ext.data.radchestct import read_labels_csv, read_location_table
from hirescam_ext.labeling.cli import main as label_main
from hirescam_ext.labels import LABEL_NAMES, LOCATION_NAMES
from hirescam_ext.utils.errors import InputError

ZEROS = ["0"] * len(LABEL_NAMES)


def _csv(path: Path, header: list[str], rows: list[list[str]], encoding: str = "utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ---------------------------------------------------------------- labels CSV
def _labels_fault(tmp: Path, fault: str) -> Path:
    header = ["accession", *LABEL_NAMES]
    path = tmp / "labels.csv"
    if fault == "missing label column":
        return _csv(path, header[:-1], [["a", *ZEROS[:-1]]])
    if fault == "unknown column":
        return _csv(path, [*header, "lung_banana"], [["a", *ZEROS, "0"]])
    if fault == "duplicated accession":
        return _csv(path, header, [["a", *ZEROS], ["b", *ZEROS], ["a", *ZEROS]])
    if fault == "value 2":
        return _csv(path, header, [["a", "2", *ZEROS[1:]]])
    if fault == "value yes":
        return _csv(path, header, [["a", *ZEROS[:-1], "yes"]])
    if fault == "value 0.5":
        return _csv(path, header, [["a", "0.5", *ZEROS[1:]]])
    if fault == "empty value":
        return _csv(path, header, [["a", "", *ZEROS[1:]]])
    if fault == "empty accession":
        return _csv(path, header, [["", *ZEROS]])
    if fault == "ragged line":
        return _csv(path, header, [["a", *ZEROS[:-3]]])
    if fault == "duplicated column":
        return _csv(path, [*header, LABEL_NAMES[0]], [["a", *ZEROS, "0"]])
    if fault == "empty file":
        path.write_bytes(b"")
        return path
    if fault == "not UTF-8":
        path.write_bytes(("accession," + ",".join(LABEL_NAMES) + "\n").encode() + b"\xff\xfe," + b",".join([b"0"] * 80))
        return path
    if fault == "missing file":
        return tmp / "nope.csv"
    raise KeyError(fault)


LABEL_FAULTS = {
    "missing label column": f"missing label column(s) ['{LABEL_NAMES[-1]}']",
    "unknown column": "unknown column(s) ['lung_banana']",
    "duplicated accession": "line 4: duplicated accession 'a'",
    "value 2": "value '2' is not 0 or 1",
    "value yes": "value 'yes' is not 0 or 1",
    "value 0.5": "value '0.5' is not 0 or 1",
    "empty value": "value '' is not 0 or 1",
    "empty accession": "empty accession",
    "ragged line": "line 2 has",
    "duplicated column": "duplicated column(s)",
    "empty file": "empty CSV file",
    "not UTF-8": "not a UTF-8 text CSV file",
    "missing file": "cannot read the file",
}


@pytest.mark.parametrize("fault", list(LABEL_FAULTS))
def test_bad_labels_csv_raises_input_error(fault: str, tmp_path: Path) -> None:
    path = _labels_fault(tmp_path, fault)
    with pytest.raises(InputError) as info:
        read_labels_csv(path)
    assert info.value.path == str(path)
    assert LABEL_FAULTS[fault] in info.value.problem, info.value.problem


def test_labels_csv_saved_by_excel_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    path = _csv(tmp_path / "bom.csv", ["accession", *LABEL_NAMES], [["a1", "1", *ZEROS[1:]]], encoding="utf-8-sig")
    labels = read_labels_csv(path, accession_column="accession")
    assert list(labels) == ["a1"] and int(labels["a1"][0]) == 1


# ---------------------------------------------------------------- location tables
LOCATION_FAULTS = {
    "unknown abnormality": (["abnormality", LOCATION_NAMES[0]], [["lung_banana", "1"]], "unknown abnormality"),
    "unknown location": (["abnormality", "elbow"], [[LABEL_NAMES[0], "1"]], "unknown location column(s) ['elbow']"),
    "repeated abnormality": (
        ["abnormality", LOCATION_NAMES[0]], [[LABEL_NAMES[0], "1"], [LABEL_NAMES[0], "0"]], "appears twice"
    ),
    "value not 0/1": (["abnormality", LOCATION_NAMES[0]], [[LABEL_NAMES[0], "x"]], "is not 0 or 1"),
    "wrong first column": (["label", LOCATION_NAMES[0]], [[LABEL_NAMES[0], "1"]], "first column must be"),
}


@pytest.mark.parametrize("fault", list(LOCATION_FAULTS))
def test_bad_location_table_raises_input_error(fault: str, tmp_path: Path) -> None:
    header, rows, expected = LOCATION_FAULTS[fault]
    path = _csv(tmp_path / "acc.csv", header, rows)
    with pytest.raises(InputError) as info:
        read_location_table(path)
    assert info.value.path == str(path) and expected in info.value.problem


# ---------------------------------------------------------------- data lists
DATALIST_FAULTS = {
    "not JSON": ("{training: [", "not valid JSON"),
    "no split": (json.dumps({"validation": []}), "no split 'training'"),
    "item without image": (json.dumps({"training": [{"label": [0] * 80}]}), "has no 'image'"),
    "label of 5 values": (json.dumps({"training": [{"image": "a.nii.gz", "label": [0] * 5}]}), "list of 80 values"),
    "label value 3": (json.dumps({"training": [{"image": "a.nii.gz", "label": [3] + [0] * 79}]}), "other than 0/1"),
}


@pytest.mark.parametrize("fault", list(DATALIST_FAULTS))
def test_bad_datalist_raises_input_error(fault: str, tmp_path: Path) -> None:
    text, expected = DATALIST_FAULTS[fault]
    path = tmp_path / "datalist.json"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_datalist(path, "training")
    assert info.value.path == str(path) and expected in info.value.problem


def test_missing_datalist_raises_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read the data list"):
        load_datalist(tmp_path / "absent.json")


def test_missing_dataset_dir_without_synthetic_generation_raises_input_error(tmp_path: Path) -> None:
    from hirescam_ext.bundle_tools.dataset import ensure_dataset

    with pytest.raises(InputError) as info:
        ensure_dataset(tmp_path / "absent", synthetic_profile=None)
    assert info.value.path == str(tmp_path / "absent") and "no datalist.json" in info.value.problem
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "my_scan.nii.gz").write_bytes(b"x")
    with pytest.raises(InputError, match="refusing to write synthetic data"):
        ensure_dataset(tmp_path / "busy")


# ---------------------------------------------------------------- hirescam label: skip, list, exit status
def _run_label(tmp: Path, reports: dict[str, bytes], *extra: str) -> tuple[int, Path]:
    folder = tmp / "reports"
    folder.mkdir(exist_ok=True)
    for name, data in reports.items():
        (folder / f"{name}.txt").write_bytes(data)
    out = tmp / "out"
    return label_main([str(folder), "--out", str(out), "--no-progress", *extra]), out


def _failures(out: Path) -> dict[str, str]:
    with open(out / "failures.csv", encoding="utf-8") as f:
        return {r["accession"]: r["problem"] for r in csv.DictReader(f)}


def _labelled(out: Path) -> list[str]:
    with open(out / "labels.csv", encoding="utf-8") as f:
        return [r["accession"] for r in csv.DictReader(f)]


def test_label_batch_skips_empty_and_lists_it_with_exit_status_1(tmp_path: Path, capsys) -> None:
    status, out = _run_label(
        tmp_path,
        {
            "empty": b"",
            "blank": b"   \n\t ",
            "good": b"FINDINGS: Nodule in the right upper lobe.",
            "latin1": "Épanchement pleural. Pleural effusion on the left.".encode("latin-1"),
            "nofindings": b"IMPRESSION: Cardiomegaly.",
        },
    )
    assert status == 1
    assert _failures(out) == {"blank": "empty report", "empty": "empty report"}
    assert sorted(_labelled(out)) == ["good", "latin1", "nofindings"]
    summary = json.loads(capsys.readouterr().out)
    assert summary["failed"] == 2 and summary["labelled"] == 3
    assert {f["accession"] for f in summary["failures"]} == {"empty", "blank"}
    assert not [p for p in out.rglob("*") if ".tmp" in p.name], "no temporary file left behind"


def test_label_batch_strict_utf8_lists_the_bad_bytes(tmp_path: Path) -> None:
    status, out = _run_label(tmp_path, {"bad": b"Nodule \xff\xfe.", "good": b"Nodule."}, "--strict-utf8")
    assert status == 1
    assert "not valid UTF-8" in _failures(out)["bad"] and _labelled(out) == ["good"]


def test_label_batch_duplicated_accession_is_listed_not_written_twice(tmp_path: Path) -> None:
    src = _csv(
        tmp_path / "reports.csv",
        ["acc", "report"],
        [["A1", "Nodule."], ["A2", "Cardiomegaly."], ["A1", "Pleural effusion."]],
    )
    out = tmp_path / "out"
    status = label_main([str(src), "--out", str(out), "--id-column", "acc", "--no-progress"])
    assert status == 1
    assert _labelled(out) == ["A1", "A2"]
    assert "duplicated accession" in _failures(out)["A1"]
    read_labels_csv(out / "labels.csv")  # the written table is valid input for training


def test_label_batch_missing_text_column_is_unusable_input(tmp_path: Path, capsys) -> None:
    src = _csv(tmp_path / "reports.csv", ["acc", "text"], [["A1", "Nodule."]])
    assert label_main([str(src), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(src) in err and "no column 'report'" in err
    assert not (tmp_path / "out" / "labels.csv").exists()


def test_label_batch_unwritable_output_folder_fails_clearly(tmp_path: Path, capsys) -> None:
    (tmp_path / "a_file").write_text("occupied")
    out = tmp_path / "a_file" / "out"
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "r.txt").write_text("Nodule.")
    assert label_main([str(folder), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "output folder" in err


def test_very_long_report_is_labelled(tmp_path: Path) -> None:
    text = ("FINDINGS: " + "The heart is normal in size. " * 4000 + "Nodule in the left lower lobe.").encode()
    status, out = _run_label(tmp_path, {"long": text})
    assert status == 0
    with open(out / "labels.csv", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    assert row["lung_nodule"] == "1" and row["heart_cardiomegaly"] == "0"


# ---------------------------------------------------------------- labeler properties
@lru_cache(maxsize=1)
def _labeler():
    from hirescam_ext.labeling import ReportLabeler

    return ReportLabeler()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=400))
def test_labeler_never_crashes_on_arbitrary_unicode_and_returns_80_labels(text: str) -> None:
    result = _labeler().label(text)
    assert list(result.labels) == list(LABEL_NAMES)
    assert set(result.labels.values()) <= {0, 1}
    assert result.locations.shape == (len(LABEL_NAMES), len(LOCATION_NAMES))
    for sentence in result.sentences:
        assert text[sentence.start : sentence.end] == sentence.text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    words=st.lists(
        st.sampled_from(
            ["nodule", "no", "right", "upper", "lobe", "effusion", "pleural", "not", "without", ".", ",", "\n",
             "FINDINGS:", "IMPRESSION:", "cardiomegaly", "left", "lung", "mass", "?", "0.5 cm", "likely"]
        ),
        max_size=60,
    )
)  # fmt: skip
def test_labeler_on_report_like_word_salad_is_consistent(words: list[str]) -> None:
    text = " ".join(words)
    result = _labeler().label(text)
    assert result.positive_labels == [n for n in LABEL_NAMES if result.labels[n]]
    assert int(result.locations.sum()) == 0 or result.positive_labels  # locations only for positive labels
    for ev in result.evidence:  # evidence spans point into the report and every evidence label is positive
        assert 0 <= ev.start < ev.end <= len(text)
        assert text[ev.start : ev.end].lower() == ev.term.lower()
        assert all(result.labels[label] for label in ev.labels)
    for sentence in result.sentences:
        assert text[sentence.start : sentence.end] == sentence.text
