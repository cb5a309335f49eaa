"""RAD-ChestCT reader and tables: npz orientation round trip, labels CSV, location tables, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import LoadImaged, Orientationd

from hirescam_ext.data.radchestct import (
    RadChestCTNpzReader,
    read_labels_csv,
    read_location_table,
    write_labels_csv,
    write_location_table,
    write_radchestct_npz,
)
from hirescam_ext.labels import LABEL_NAMES, LOCATION_NAMES
from hirescam_ext.utils.errors import InputError

S, R, C = 5, 6, 7  # slices, rows, cols


@pytest.fixture
def npz_volume(tmp_path):
    vol = np.full((S, R, C), -1000, dtype=np.int16)
    vol[0, 2, 3] = 100  # most inferior slice
    vol[2, 0, 3] = 200  # anterior row
    vol[2, 2, 0] = 300  # column 0 = patient right
    path = tmp_path / "trn00001.npz"
    write_radchestct_npz(path, vol)
    return path, vol


def _load(path, **reader_kwargs):
    load = LoadImaged("image", reader=RadChestCTNpzReader(**reader_kwargs), image_only=True, ensure_channel_first=True)
    return load({"image": str(path)})["image"]


def test_npz_reader_returns_cols_rows_slices(npz_volume):
    path, vol = npz_volume
    img = _load(path)
    assert tuple(img.shape) == (1, C, R, S)
    assert np.array_equal(img[0].numpy(), np.transpose(vol, (2, 1, 0)).astype(np.float32))


def test_npz_reader_spacing_is_0p8(npz_volume):
    img = _load(npz_volume[0])
    assert torch.allclose(torch.linalg.norm(img.affine[:3, :3], dim=0), torch.tensor([0.8] * 3, dtype=img.affine.dtype))


def test_npz_after_ras_orientation_right_anterior_superior_grow(npz_volume):
    path, _ = npz_volume
    orient = Orientationd("image", axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))
    img = orient({"image": _load(path)})["image"]
    x, y, z = img.shape[1:]
    assert img[0, :, :, 0].max() == 100  # inferior slice stays at z = 0
    assert float(img[0, x - 1, R - 1 - 2, 2]) == 300  # patient right -> largest X
    assert float(img[0, C - 1 - 3, y - 1, 2]) == 200  # anterior -> largest Y


def test_npz_superior_to_inferior_option_flips_z(npz_volume):
    path, _ = npz_volume
    img = _load(path, slice_order="superior_to_inferior")
    img = Orientationd("image", axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))({"image": img})["image"]
    assert img[0, :, :, S - 1].max() == 100


def test_npz_missing_key_names_the_file(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez_compressed(path, volume=np.zeros((2, 2, 2), np.int16))
    with pytest.raises(InputError, match="bad.npz.*'ct'"):
        RadChestCTNpzReader().read(path)


def test_npz_reader_only_claims_npz():
    reader = RadChestCTNpzReader()
    assert reader.verify_suffix("a.npz") and not reader.verify_suffix("a.nii.gz")


# ------------------------------------------------------------------ labels CSV
def _labels(n=3):
    rng = np.random.RandomState(0)
    return {f"acc{i}": rng.randint(0, 2, len(LABEL_NAMES)) for i in range(n)}


def test_labels_csv_round_trip(tmp_path):
    labels = _labels()
    write_labels_csv(tmp_path / "labels.csv", labels)
    back = read_labels_csv(tmp_path / "labels.csv")
    assert list(back) == list(labels)
    for acc in labels:
        assert np.array_equal(back[acc], labels[acc])


def _write(tmp_path, header, rows, name="labels.csv"):
    path = tmp_path / name
    path.write_text("\n".join(",".join(map(str, r)) for r in [header, *rows]) + "\n")
    return path


def test_labels_csv_missing_column_names_file(tmp_path):
    path = _write(tmp_path, ["accession", *LABEL_NAMES[:-1]], [["a", *[0] * 79]])
    with pytest.raises(InputError, match=r"labels\.csv.*missing label column.*" + LABEL_NAMES[-1]):
        read_labels_csv(path)


def test_labels_csv_unknown_column_names_file(tmp_path):
    path = _write(tmp_path, ["accession", *LABEL_NAMES, "mystery"], [["a", *[0] * 81]])
    with pytest.raises(InputError, match=r"labels\.csv.*unknown column.*mystery"):
        read_labels_csv(path)


def test_labels_csv_unknown_column_can_be_ignored(tmp_path):
    path = _write(tmp_path, ["accession", "mystery", *LABEL_NAMES], [["a", 1, *[1] * 80]])
    assert read_labels_csv(path, extra_columns="ignore")["a"].sum() == 80


def test_labels_csv_duplicated_accession(tmp_path):
    path = _write(tmp_path, ["accession", *LABEL_NAMES], [["a", *[0] * 80], ["a", *[1] * 80]])
    with pytest.raises(InputError, match=r"labels\.csv.*duplicated accession 'a'"):
        read_labels_csv(path)


def test_labels_csv_value_not_binary(tmp_path):
    path = _write(tmp_path, ["accession", *LABEL_NAMES], [["a", 2, *[0] * 79]])
    with pytest.raises(InputError, match=r"labels\.csv.*line 2.*'2' is not 0 or 1"):
        read_labels_csv(path)


def test_labels_csv_missing_file_names_file(tmp_path):
    with pytest.raises(InputError, match="nothere.csv"):
        read_labels_csv(tmp_path / "nothere.csv")


# ------------------------------------------------------------------ location tables
def test_location_table_round_trip(tmp_path):
    table = {"lung_nodule": ["right_upper", "right_lung"], "h_heart_cardiomegaly": ["heart"]}
    table = {k: v for k, v in table.items() if k in LABEL_NAMES}
    assert table, "test labels must exist in the label set"
    write_location_table(tmp_path / "loc.csv", table)
    assert read_location_table(tmp_path / "loc.csv") == table


def test_location_table_accepts_subset_of_columns(tmp_path):
    name = next(n for n in LABEL_NAMES if not n.startswith("h_"))
    path = _write(tmp_path, ["abnormality", "left_lower", "lung"], [[name, 1, 0]], "loc.csv")
    assert read_location_table(path) == {name: ["left_lower"]}


@pytest.mark.parametrize(
    "header,row,message",
    [
        (["abnormality", "nowhere"], ["X", 1], "unknown location column"),
        (["abnormality", "lung"], ["not_a_label", 1], "unknown abnormality 'not_a_label'"),
        (["abnormality", "lung"], ["X", 5], "'5' is not 0 or 1"),
        (["label", "lung"], ["X", 1], "first column must be 'abnormality'"),
    ],
)
def test_location_table_errors_name_the_file(tmp_path, header, row, message):
    name = next(n for n in LABEL_NAMES if not n.startswith("h_"))
    row = [name if v == "X" else v for v in row]
    path = _write(tmp_path, header, [row], "scan7.csv")
    with pytest.raises(InputError, match=r"scan7\.csv.*" + message):
        read_location_table(path)


def test_location_names_cover_sides():
    assert {"right_lung", "left_lung", "lung", "right", "left"} <= set(LOCATION_NAMES)
