"""``hirescam regions``: writes organ maps and location tables, resumes, survives one bad scan, reports failures."""

from __future__ import annotations

import json
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from hirescam_ext.data.radchestct import read_location_table
from hirescam_ext.regions import cli


@pytest.fixture
def dataset(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "reports").mkdir()
    affine = np.diag([-2.0, -2.0, 2.5, 1.0])
    for acc in ("a1", "a2", "bad"):
        vol = np.full((8, 8, 6), -1000, np.int16)
        if acc == "bad":
            vol[0, 0, 0] = 1234  # the fake segmenter fails on this one
        nib.save(nib.Nifti1Image(vol, affine), tmp_path / "images" / f"{acc}.nii.gz")
        (tmp_path / "reports" / f"{acc}.txt").write_text("Nodule in the right upper lobe.")
    return tmp_path


class FakeSegmenter:
    def __init__(self):
        self.calls = 0

    def __call__(self, volume, affine=None):
        self.calls += 1
        if volume.max() > 1000:
            raise RuntimeError("cannot segment")
        organs = np.zeros(volume.shape, np.uint8)
        organs[: volume.shape[0] // 2] = 3
        return SimpleNamespace(organs=organs, ok=True, quality=lambda: {"ok": True})


class FakeLabeler:
    def label(self, text):
        return SimpleNamespace(location_rows=lambda: {"lung_atelectasis": ["right_upper"]})


@pytest.fixture
def fakes(monkeypatch):
    seg = FakeSegmenter()
    monkeypatch.setattr(cli, "_load_segmenter", lambda: seg)
    monkeypatch.setattr(cli, "_load_labeler", lambda: FakeLabeler())
    return seg


def test_writes_outputs_and_lists_the_failure(dataset, fakes, capsys):
    status = cli.main(["--dataset", str(dataset), "--no-progress"])
    assert status == 1
    organs = nib.load(dataset / "organs" / "a1.nii.gz")
    assert organs.shape == (8, 8, 6) and np.allclose(organs.affine, np.diag([-2.0, -2.0, 2.5, 1.0]))
    assert read_location_table(dataset / "locations" / "a2.csv") == {"lung_atelectasis": ["right_upper"]}
    assert (dataset / "locations" / "bad.csv").exists() and not (dataset / "organs" / "bad.nii.gz").exists()
    failures = json.loads((dataset / "regions_failures.json").read_text())["failures"]
    assert [(f["accession"], f["step"]) for f in failures] == [("bad", "organs")]
    summary = json.loads(capsys.readouterr().out)
    assert summary["organs_written"] == 2 and summary["failed"] == 1


def test_rerun_keeps_valid_outputs_and_redoes_broken_ones(dataset, fakes, capsys):
    cli.main(["--dataset", str(dataset), "--no-progress"])
    (dataset / "organs" / "a2.nii.gz").write_bytes(b"truncated")
    fakes.calls = 0
    cli.main(["--dataset", str(dataset), "--no-progress"])
    assert fakes.calls == 2  # a2 (broken) and bad (failed before); a1 kept
    assert nib.load(dataset / "organs" / "a2.nii.gz").shape == (8, 8, 6)


def test_missing_segmentation_module_is_reported_not_fatal(dataset, monkeypatch, capsys):
    def unavailable():
        raise RuntimeError("organ segmentation is not available (hirescam_ext.segmentation: boom)")

    monkeypatch.setattr(cli, "_load_segmenter", unavailable)
    monkeypatch.setattr(cli, "_load_labeler", lambda: FakeLabeler())
    assert cli.main(["--dataset", str(dataset), "--no-progress"]) == 1
    assert len(list((dataset / "locations").glob("*.csv"))) == 3
    failures = json.loads((dataset / "regions_failures.json").read_text())["failures"]
    assert {f["step"] for f in failures} == {"organs"} and "not available" in failures[0]["error"]


def test_bad_dataset_folder_exits_2(tmp_path, capsys):
    assert cli.main(["--dataset", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err


def test_real_labeler_writes_a_readable_table(dataset):
    pytest.importorskip("hirescam_ext.labeling")
    assert cli.main(["--dataset", str(dataset), "--skip-organs", "--no-progress"]) == 0
    table = read_location_table(dataset / "locations" / "a1.csv")
    assert isinstance(table, dict)
