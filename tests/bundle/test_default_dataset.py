"""With no dataset_dir, the bundle generates the synthetic benchmark on first use and trains on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hirescam_ext.bundle_tools import dataset_provenance, dataset_spacing, ensure_dataset
from hirescam_ext.utils.errors import InputError


def test_train_without_dataset_dir_generates_the_synthetic_default(tmp_path: Path, bundle_tools) -> None:
    bundle_tools.run(
        "train.json",
        args=["--bundle_root", str(tmp_path), "--synthetic_profile", "tiny", "--train#trainer#max_epochs", "1",
              *bundle_tools.tiny],
        cwd=tmp_path,
    )  # fmt: skip
    datalist = json.loads((tmp_path / "data" / "synthetic" / "datalist.json").read_text())
    assert len(datalist["training"]) > 0 and "test_shifted" in datalist
    assert (tmp_path / "models" / "last.pt").is_file()


def test_an_existing_data_list_is_used_as_is(tiny_synthetic: Path) -> None:
    assert ensure_dataset(tiny_synthetic) == str(tiny_synthetic / "datalist.json")


def test_a_non_empty_folder_without_data_list_is_refused(tmp_path: Path) -> None:
    (tmp_path / "my_scan.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match="not empty but has no datalist.json"):
        ensure_dataset(tmp_path)


def test_generation_can_be_forbidden(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no datalist.json here"):
        ensure_dataset(tmp_path / "empty", synthetic_profile=None)


def test_the_synthetic_spacing_and_provenance_come_from_meta_json(tiny_synthetic: Path) -> None:
    datalist = tiny_synthetic / "datalist.json"
    assert dataset_spacing(datalist) == [5.8, 5.8, 6.4]  # the tiny profile's voxel size
    provenance = dataset_provenance(datalist)
    assert provenance["generator_version"] and provenance["spacing"] == [5.8, 5.8, 6.4]
    assert provenance["confounder_strength"] == 0.8 and provenance["confounder_shift"] == "reverse"
    assert provenance["plaque_scale"] == 1.0  # the default rendering, which meta.json leaves unrecorded


def test_a_dataset_without_meta_json_has_no_known_spacing(tmp_path: Path) -> None:
    (tmp_path / "datalist.json").write_text(json.dumps({"training": []}))
    assert dataset_spacing(tmp_path / "datalist.json") is None
