"""Finding the scans of an inference run and naming their output folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from hirescam_ext.inference import find_ct_inputs, pending_inputs, scan_name, unique_scan_names
from hirescam_ext.utils.errors import InputError


def test_scan_name_drops_volume_suffixes() -> None:
    assert scan_name("a/b/ct.nii.gz") == "ct" and scan_name("x/series_dir") == "series_dir"


def test_scans_of_the_same_name_get_distinct_output_names() -> None:
    names = unique_scan_names(["in/p1/ct.nii.gz", "in/p2/ct.nii.gz", "in/other.nrrd"])
    assert names == ["p1_ct", "p2_ct", "other"]


def test_the_same_path_twice_is_an_error() -> None:
    with pytest.raises(InputError, match="listed twice"):
        unique_scan_names(["a/ct.nii.gz", "a/./ct.nii.gz"])


def test_pending_inputs_skips_only_finished_scans(tmp_path: Path) -> None:
    for sub in ("p1", "p2"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        (tmp_path / "in" / sub / "ct.nii.gz").write_bytes(b"")
    sources = find_ct_inputs(tmp_path / "in")
    out = tmp_path / "out"
    (out / "p1_ct").mkdir(parents=True)
    (out / "p1_ct" / "done.json").write_text("{}")
    assert [item["scan"] for item in pending_inputs(sources, out)] == ["p2_ct"]
    assert len(pending_inputs(sources, out, skip_done=False)) == 2


def test_pending_inputs_says_how_many_finished_scans_it_skips(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ct.nii.gz").write_bytes(b"")
    sources = find_ct_inputs(tmp_path / "in")
    out = tmp_path / "out"
    (out / "ct").mkdir(parents=True)
    (out / "ct" / "done.json").write_text("{}")
    with caplog.at_level("INFO", logger="hirescam_ext.inference.writer"):
        assert pending_inputs(sources, out) == []
    assert "1 of 1 scans already have results" in caplog.text


def test_find_ct_inputs_names_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        find_ct_inputs(tmp_path / "nope")
