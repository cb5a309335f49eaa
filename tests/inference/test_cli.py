"""``hirescam infer``: the inference bundle behind one command, expected faults as one line and exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from hirescam_ext.cli import main as hirescam
from hirescam_ext.engines import define_network, make_model_settings

TINY_NET = {"n_classes": 80, "spatial_size": [64, 64, 48], "trunk": "small", "pretrained": None,
            "custom_convs": True, "custom_conv_padding": 1, "slice_pooling": "mean"}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained small-trunk AxialNet saved with its model settings, as training saves it."""
    torch.manual_seed(0)
    net = define_network("hirescam_ext.AxialNet", **TINY_NET)
    settings = make_model_settings(net, [5.8, 5.8, 6.4], [64, 64, 48], [-1000, 800], -0.449, attention_grid=[16, 4, 4])
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    torch.save({"model": net.state_dict(), "model_settings": settings}, path)
    return path


def _scan(path: Path, shape: tuple[int, int, int] = (64, 64, 48), spacing: float = 5.8) -> Path:
    rng = np.random.default_rng(0)
    volume = rng.normal(-200.0, 300.0, size=shape).astype(np.float32)
    volume[:8] = -1000.0
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(volume, np.diag([spacing, spacing, 6.4, 1.0])), str(path))
    return path


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_garbage_checkpoint_is_one_line_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _scan(tmp_path / "scans" / "a.nii.gz")
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"this is not a checkpoint")
    status = hirescam(["infer", "-i", str(tmp_path / "scans"), "-o", str(tmp_path / "out"), "--model", str(bad)])
    line = _one_line(capsys.readouterr().err)
    assert status == 2
    assert line.startswith("hirescam infer: ") and str(bad) in line and "checkpoint" in line


def test_missing_input_folder_is_one_line_naming_it(
    tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no_such_folder"
    status = hirescam(["infer", "-i", str(missing), "-o", str(tmp_path / "out"), "--model", str(tiny_ckpt)])
    line = _one_line(capsys.readouterr().err)
    assert status == 2
    assert line == f"hirescam infer: {missing}: does not exist"


def test_setting_conflict_inside_monai_expressions_is_one_line(
    tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _scan(tmp_path / "scans" / "a.nii.gz")
    args = ["infer", "-i", str(tmp_path / "scans"), "-o", str(tmp_path / "out"), "--model", str(tiny_ckpt)]
    status = hirescam([*args, "--labels", "no_such_label"])
    line = _one_line(capsys.readouterr().err)
    assert status == 2
    assert line.startswith("hirescam infer: ") and "no_such_label" in line


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="does not exist"):
        hirescam(["infer", "-i", str(tmp_path / "missing"), "-o", str(tmp_path / "out"), "--debug"])


def test_tiny_run_writes_result_json(tiny_ckpt: Path, tmp_path: Path) -> None:
    _scan(tmp_path / "scans" / "a.nii.gz")
    out = tmp_path / "out"
    args = ["-i", str(tmp_path / "scans"), "-o", str(out), "--model", str(tiny_ckpt), "--device", "cpu"]
    status = hirescam(["infer", *args, "--top-k", "2"])
    assert status == 0
    result = json.loads((out / "a" / "result.json").read_text())
    assert len(list((out / "a").glob("hirescam_*.nii.gz"))) == 2, result
    assert (out / "probabilities.csv").is_file()


def test_implausible_spacing_scan_is_reported_and_the_others_written(tiny_ckpt: Path, tmp_path: Path) -> None:
    _scan(tmp_path / "scans" / "good.nii.gz")
    _scan(tmp_path / "scans" / "wrong_unit.nii.gz", spacing=104.0)
    out = tmp_path / "out"
    status = hirescam(["infer", "-i", str(tmp_path / "scans"), "-o", str(out), "--model", str(tiny_ckpt)])
    assert status == 1
    assert (out / "good" / "result.json").is_file()
    failures = (out / "failures.csv").read_text()
    assert "wrong_unit" in failures and "implausible voxel spacing" in failures


def test_default_model_is_the_trained_checkpoint_when_there_is_one(tmp_path: Path) -> None:
    from hirescam_ext.inference.cli import default_model

    for rel in ("models/best.pt", "bundle/models/reference.pt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert default_model(tmp_path) == tmp_path / "models" / "best.pt"


def test_default_model_falls_back_to_the_shipped_reference_in_a_fresh_checkout(tmp_path: Path) -> None:
    from hirescam_ext.inference.cli import default_model

    assert default_model(tmp_path) == tmp_path / "models" / "best.pt"  # neither: the run names the missing best.pt
    (tmp_path / "bundle" / "models").mkdir(parents=True)
    (tmp_path / "bundle" / "models" / "reference.pt").write_bytes(b"x")
    assert default_model(tmp_path) == tmp_path / "bundle" / "models" / "reference.pt"
