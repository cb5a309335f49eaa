"""Data lists: writing one for a user folder of CTs + labels CSV, and loading a split with checks."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest

from hirescam_ext.data.datalist import accession_of, find_scans, load_datalist, make_datalist
from hirescam_ext.data.radchestct import write_labels_csv, write_radchestct_npz
from hirescam_ext.labels import LABEL_NAMES
from hirescam_ext.utils.errors import InputError


@pytest.fixture
def user_folder(tmp_path):
    images = tmp_path / "cts"
    images.mkdir()
    for i in range(4):
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.int16), np.eye(4)), images / f"scan{i}.nii.gz")
    write_radchestct_npz(images / "scan4.npz", np.zeros((3, 4, 4), np.int16))
    dicom = images / "scan5"
    dicom.mkdir()
    (dicom / "IMG0001.dcm").write_bytes(b"\0")
    (tmp_path / "organs").mkdir()
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.uint8), np.eye(4)), tmp_path / "organs" / "scan0.nii.gz")
    labels = {f"scan{i}": np.eye(len(LABEL_NAMES), dtype=int)[i] for i in range(6)}
    write_labels_csv(tmp_path / "labels.csv", labels)
    return tmp_path


def test_accession_strips_known_suffixes():
    assert accession_of("/a/trn01.nii.gz") == "trn01" and accession_of("b/x.npz") == "x" and accession_of("d/") == "d"


def test_find_scans_lists_files_and_dicom_folders(user_folder):
    assert sorted(find_scans(user_folder / "cts")) == [f"scan{i}" for i in range(6)]


def test_make_then_load_round_trip(user_folder):
    out = user_folder / "lists" / "datalist.json"
    make_datalist(user_folder / "cts", user_folder / "labels.csv", out, organs_dir=user_folder / "organs",
                  splits={"training": 1.0})
    items = load_datalist(out, "training")
    assert len(items) == 6
    by_acc = {item["accession"]: item for item in items}
    assert all(os.path.exists(item["image"]) for item in items)
    assert by_acc["scan3"]["label"][3] == 1 and sum(by_acc["scan3"]["label"]) == 1
    assert os.path.samefile(by_acc["scan0"]["organs"], user_folder / "organs" / "scan0.nii.gz")
    assert "organs" not in by_acc["scan1"]
    stored = json.loads(out.read_text())
    assert not os.path.isabs(stored["training"][0]["image"])  # relative to the JSON's folder


def test_fractional_splits_are_seeded(user_folder):
    a = make_datalist(user_folder / "cts", user_folder / "labels.csv", user_folder / "a.json", seed=3,
                      splits={"training": 0.5, "validation": 0.5})
    b = make_datalist(user_folder / "cts", user_folder / "labels.csv", user_folder / "b.json", seed=3,
                      splits={"training": 0.5, "validation": 0.5})
    assert a == b and len(a["training"]) == 3 and len(a["validation"]) == 3


def test_explicit_split_mapping(user_folder):
    splits = {f"scan{i}": ("test" if i == 2 else "training") for i in range(6)}
    lists = make_datalist(user_folder / "cts", user_folder / "labels.csv", user_folder / "d.json", splits=splits)
    assert [item["accession"] for item in lists["test"]] == ["scan2"]


def test_scan_without_labels_is_an_error_naming_the_csv(user_folder):
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4)), user_folder / "cts" / "extra.nii.gz")
    with pytest.raises(InputError, match=r"labels\.csv.*extra"):
        make_datalist(user_folder / "cts", user_folder / "labels.csv", user_folder / "e.json")


def test_load_missing_split_names_file(tmp_path):
    path = tmp_path / "dl.json"
    path.write_text(json.dumps({"training": []}))
    with pytest.raises(InputError, match=r"dl\.json.*no split 'validation'.*training"):
        load_datalist(path, "validation")


def test_load_bad_label_length_names_file(tmp_path):
    path = tmp_path / "dl.json"
    path.write_text(json.dumps({"training": [{"image": "a.nii.gz", "label": [0, 1]}]}))
    with pytest.raises(InputError, match=r"dl\.json.*training\[0\].*80"):
        load_datalist(path, "training")


def test_load_invalid_json_names_file(tmp_path):
    path = tmp_path / "dl.json"
    path.write_text("{not json")
    with pytest.raises(InputError, match=r"dl\.json.*not valid JSON"):
        load_datalist(path)


def test_relative_dataset_dir_resolves_every_path_once(user_folder, monkeypatch):
    # issue 14 item 8: `--dataset_dir data/x` relative to the working directory joined organ paths twice
    make_datalist(user_folder / "cts", user_folder / "labels.csv", user_folder / "datalist.json",
                  organs_dir=user_folder / "organs", splits={"training": 1.0})
    monkeypatch.chdir(user_folder.parent)
    rel = user_folder.name
    items = load_datalist(os.path.join(rel, "datalist.json"), "training", base_dir=rel)
    organs = [item["organs"] for item in items if "organs" in item]
    assert organs and all(os.path.isfile(p) for p in organs), organs
    assert all(os.path.isabs(item["image"]) and os.path.exists(item["image"]) for item in items)
