"""``hirescam datalist``: make_datalist on the command line, bad input as one line and exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from hirescam_ext.cli import main as hirescam
from hirescam_ext.data.radchestct import write_labels_csv
from hirescam_ext.labels import LABEL_NAMES


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    (tmp_path / "cts").mkdir()
    (tmp_path / "organs").mkdir()
    for i in range(10):
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.int16), np.eye(4)), tmp_path / "cts" / f"scan{i}.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.uint8), np.eye(4)), tmp_path / "organs" / "scan0.nii.gz")
    labels = {f"scan{i}": np.eye(len(LABEL_NAMES), dtype=int)[i] for i in range(10)}
    write_labels_csv(tmp_path / "labels.csv", labels)
    return tmp_path


def _args(folder: Path, *extra: str) -> list[str]:
    return ["datalist", "--images", str(folder / "cts"), "--labels", str(folder / "labels.csv"),
            "--out", str(folder / "datalist.json"), *extra]  # fmt: skip


def test_writes_the_split_fractions_with_organ_maps(user_folder: Path) -> None:
    args = _args(user_folder, "--organs", str(user_folder / "organs"), "--split-fractions", "training=0.6",
                 "validation=0.4", "--seed", "2")  # fmt: skip
    assert hirescam(args) == 0
    lists = json.loads((user_folder / "datalist.json").read_text())
    assert {k: len(v) for k, v in lists.items()} == {"training": 6, "validation": 4}
    items = {item["accession"]: item for split in lists.values() for item in split}
    assert items["scan0"]["organs"] == "organs/scan0.nii.gz" and "organs" not in items["scan1"]


def test_missing_organs_folder_is_one_line_and_exit_2(user_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = user_folder / "no_organs"
    assert hirescam(_args(user_folder, "--organs", str(missing))) == 2
    err = capsys.readouterr().err
    assert err == f"hirescam datalist: {missing}: --organs: folder not found\n"
    assert not (user_folder / "datalist.json").exists()


def test_scan_without_labels_names_the_csv(user_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.int16), np.eye(4)), user_folder / "cts" / "extra.nii.gz")
    assert hirescam(_args(user_folder)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"hirescam datalist: {user_folder / 'labels.csv'}: no labels") and "extra" in err


def test_malformed_split_fraction_is_refused(user_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert hirescam(_args(user_folder, "--split-fractions", "training=lots")) == 2
    assert "'lots' for 'training' is not a number" in capsys.readouterr().err
