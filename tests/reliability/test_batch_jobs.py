"""Batch jobs skip a bad item, list it with its reason (failures file and summary), finish everything else, end
with a non-zero exit status, leave no half-written file, and on a re-run skip what is already done."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from .conftest import CONFIGS, _env


def _bad_inputs(folder: Path, good: Path) -> dict[str, str]:
    """Write broken scans next to a good one; return ``{file name: expected words of its reason}``."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(good, folder / "good.nii.gz")
    image = nib.load(good)
    data, affine = np.asarray(image.dataobj), image.affine
    raw = good.read_bytes()
    (folder / "truncated.nii.gz").write_bytes(raw[: len(raw) // 2])
    nan = data.astype(np.float32)
    nan[5:9, 5:9, 5:9] = np.nan
    nib.save(nib.Nifti1Image(nan, affine), folder / "nan.nii.gz")
    nib.save(nib.Nifti1Image(((data.astype(np.float32) + 1024) / 8).clip(0, 255).astype(np.uint8), affine),
             folder / "eightbit.nii.gz")  # fmt: skip
    nib.save(nib.Nifti1Image(data[:, :, 10].copy(), affine), folder / "flat.nii.gz")
    return {
        "truncated.nii.gz": "cannot read the image",
        "nan.nii.gz": "NaN or infinite",
        "eightbit.nii.gz": "8-bit",
        "flat.nii.gz": "2D image",
    }


def _no_temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


def test_inference_skips_every_bad_scan_lists_reasons_and_reruns_only_failures(
    uninterrupted: Path, tiny_synthetic: Path, tmp_path: Path
) -> None:
    good = sorted((tiny_synthetic / "images").glob("*.nii.gz"))[0]
    inputs = tmp_path / "inputs"
    expected = _bad_inputs(inputs, good)
    out = tmp_path / "out"
    inputs_before = {p.name: p.read_bytes() for p in inputs.iterdir()}
    cmd = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", str(CONFIGS / "inference.json"),
        "--meta_file", str(CONFIGS / "metadata.json"),
        "--logging_file", str(CONFIGS / "logging.conf"),
        "--bundle_root", str(uninterrupted), "--input_dir", str(inputs), "--output_dir", str(out),
        "--spatial_size", "[64,64,48]", "--trunk", "small", "--top_k", "1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, "failed scans must give a non-zero exit status"
    assert f"{len(expected)} scan(s) failed" in text
    with open(out / "failures.csv", encoding="utf-8") as f:
        failures = {Path(r["source"]).name: r["error"] for r in csv.DictReader(f)}
    assert set(failures) == set(expected)
    for name, words in expected.items():
        assert str(inputs / name) in failures[name] and words in failures[name], failures[name]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scans_written"] == 1 and summary["scans_failed"] == len(expected)
    with open(out / "probabilities.csv", encoding="utf-8") as f:
        assert [r["scan"] for r in csv.DictReader(f)] == ["good"]
    assert (out / "good" / "done.json").is_file()
    assert not _no_temporaries(out)
    assert {p.name: p.read_bytes() for p in inputs.iterdir()} == inputs_before, "inputs are never modified"

    marker = (out / "good" / "done.json").stat().st_mtime_ns
    again = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode != 0 and f"{len(expected)} scan(s) failed" in again.stdout + again.stderr
    assert (out / "good" / "done.json").stat().st_mtime_ns == marker, "a finished scan is not redone"
    with open(out / "probabilities.csv", encoding="utf-8") as f:
        assert [r["scan"] for r in csv.DictReader(f)] == ["good"], "the finished scan stays in the table"


def test_inference_with_checkpoint_for_another_architecture_fails_without_partial_load(
    uninterrupted: Path, tmp_path: Path
) -> None:
    from hirescam_ext.engines.checkpoint import load_network_weights
    from hirescam_ext.networks.axialnet import AxialNet
    from hirescam_ext.utils.errors import InputError

    net = AxialNet(n_classes=80, spatial_size=(64, 64, 48), trunk="small", custom_convs=False)  # another architecture
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(InputError) as info:
        load_network_weights(net, uninterrupted / "models" / "best.pt")
    assert "checkpoint does not match the network" in info.value.problem and "nothing loaded" in info.value.problem
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    other = AxialNet(n_classes=5, spatial_size=(64, 64, 48), trunk="small", custom_conv_padding=1)  # another label set
    with pytest.raises(InputError, match="shape mismatch"):
        load_network_weights(other, uninterrupted / "models" / "best.pt")
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04 half a checkpoint")
    with pytest.raises(InputError, match="not a readable PyTorch checkpoint"):
        load_network_weights(other, tmp_path / "junk.pt")


def test_checkpoint_with_pickled_code_is_refused(tmp_path: Path) -> None:
    """``weights_only=True``: a checkpoint that would run code on load is rejected, not executed."""
    from hirescam_ext.engines.checkpoint import load_network_weights
    from hirescam_ext.utils.errors import InputError

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"model": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="not a readable PyTorch checkpoint"):
        load_network_weights(torch.nn.Linear(2, 2), tmp_path / "evil.pt")
    assert not marker.exists()


def test_segment_batch_lists_bad_inputs_and_finishes_the_good_one(
    tiny_synthetic: Path, tmp_path: Path, capsys
) -> None:
    from hirescam_ext.segmentation.cli import main as segment_main

    good = sorted((tiny_synthetic / "images").glob("*.nii.gz"))[0]
    expected = _bad_inputs(tmp_path / "in", good)
    out = tmp_path / "organs"
    paths = [str(tmp_path / "in" / n) for n in ("good.nii.gz", *expected, "missing.nii.gz")]
    status = segment_main([*paths, "--out", str(out), "--no-progress"])
    assert status == 1
    summary = json.loads((out / "segment_summary.json").read_text())
    assert [Path(s["input"]).name for s in summary["segmented"]] == ["good.nii.gz"]
    failed = {Path(f["input"]).name: f["error"] for f in summary["failed"]}
    assert set(failed) == {*expected, "missing.nii.gz"}
    for name, words in expected.items():
        assert failed[name].startswith(str(tmp_path / "in" / name)) and words in failed[name], failed[name]
    assert (out / "good_organs.nii.gz").is_file() and not _no_temporaries(out)
    assert "5 of 6 input(s) failed" in capsys.readouterr().err
    first = (out / "good_organs.nii.gz").stat().st_mtime_ns
    assert segment_main([*paths, "--out", str(out), "--no-progress"]) == 1
    assert (out / "good_organs.nii.gz").stat().st_mtime_ns == first, "a finished input is not redone"
    rerun = json.loads((out / "segment_summary.json").read_text())
    assert rerun["segmented"][0]["kept"] is True and len(rerun["failed"]) == 5


def test_regions_batch_lists_a_corrupt_scan_and_a_missing_report(tiny_synthetic: Path, tmp_path: Path) -> None:
    from hirescam_ext.regions.cli import main as regions_main

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "reports").mkdir()
    scans = sorted((tiny_synthetic / "images").glob("*.nii.gz"))[:1]
    for scan in scans:
        acc = scan.name.split(".")[0]
        shutil.copy(scan, data / "images" / scan.name)
        shutil.copy(tiny_synthetic / "reports" / f"{acc}.txt", data / "reports" / f"{acc}.txt")
    raw = scans[0].read_bytes()
    (data / "images" / "broken.nii.gz").write_bytes(raw[: len(raw) // 3])
    (data / "reports" / "broken.txt").write_text("Nodule in the right upper lobe.")
    shutil.copy(scans[0], data / "images" / "noreport.nii.gz")
    status = regions_main(["--dataset", str(data), "--no-progress"])
    assert status == 1
    listed = json.loads((data / "regions_failures.json").read_text())["failures"]
    by_key = {(f["accession"], f["step"]): f["error"] for f in listed}
    assert set(by_key) == {("broken", "organs"), ("noreport", "locations")}
    assert str(data / "images" / "broken.nii.gz") in by_key[("broken", "organs")]
    assert "cannot read the image" in by_key[("broken", "organs")]
    assert "no report text" in by_key[("noreport", "locations")]
    acc = scans[0].name.split(".")[0]
    assert (data / "organs" / f"{acc}.nii.gz").is_file() and (data / "locations" / f"{acc}.csv").is_file()
    assert (data / "locations" / "broken.csv").is_file()  # the report of the corrupt scan is still labelled
    assert not _no_temporaries(data)
    first = (data / "organs" / f"{acc}.nii.gz").stat().st_mtime_ns
    assert regions_main(["--dataset", str(data), "--no-progress"]) == 1
    assert (data / "organs" / f"{acc}.nii.gz").stat().st_mtime_ns == first, "valid outputs are kept on a re-run"


def test_disk_cache_file_truncated_by_a_crash_is_recomputed(tmp_path: Path) -> None:
    from hirescam_ext.data.dataset import make_dataset

    def double(item: dict) -> dict:
        return {"x": torch.as_tensor(item["x"]) * 2}

    data = [{"x": [1.0, 2.0]}, {"x": [3.0, 4.0]}]
    ds = make_dataset(data, double, cache="disk", cache_dir=tmp_path / "cache")
    first = [ds[i]["x"].clone() for i in range(2)]
    cached = sorted((tmp_path / "cache").glob("*.pt"))
    assert len(cached) == 2
    cached[0].write_bytes(cached[0].read_bytes()[:20])  # a crash in the middle of writing
    ds2 = make_dataset(data, double, cache="disk", cache_dir=tmp_path / "cache")
    assert all(torch.equal(ds2[i]["x"], first[i]) for i in range(2))


def test_unwritable_output_folder_is_reported_before_any_work(tmp_path: Path) -> None:
    from hirescam_ext.inference.writer import ExplanationWriter
    from hirescam_ext.utils.errors import InputError
    from hirescam_ext.utils.io import ensure_writable_dir

    (tmp_path / "a_file").write_text("occupied")
    blocked = tmp_path / "a_file" / "outputs"
    with pytest.raises(InputError) as info:
        ensure_writable_dir(blocked)
    assert info.value.path == str(blocked) and "output folder cannot be created or written" in info.value.problem
    writer = ExplanationWriter(blocked, transform=None)
    with pytest.raises(InputError, match="output folder cannot be created"):
        writer._started(None)
    assert ensure_writable_dir(tmp_path / "fresh" / "deep") == str(tmp_path / "fresh" / "deep")
    assert [p.name for p in (tmp_path / "fresh" / "deep").iterdir()] == []  # the write probe is removed
