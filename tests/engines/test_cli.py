"""``hirescam train`` / ``hirescam evaluate``: the bundle workflows behind one command, expected faults as one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from hirescam_ext.cli import main as hirescam
from hirescam_ext.engines.cli import parse_overrides
from hirescam_ext.utils.errors import InputError


def test_overrides_are_read_like_monai_bundle_run_reads_them() -> None:
    overrides, debug = parse_overrides(
        ["--dataset_dir", "data/x", "--train#trainer#max_epochs", "5", "--spatial_size", "[64,64,48]",
         "--use_mask_loss", "False", "--learning_rate=1e-3", "--ckpt_path", "None", "--cache", "none", "--debug"], "hirescam train"
    )  # fmt: skip
    assert overrides == {"dataset_dir": "data/x", "train#trainer#max_epochs": 5, "spatial_size": [64, 64, 48],
                         "use_mask_loss": False, "learning_rate": 1e-3, "ckpt_path": None, "cache": "none"}  # fmt: skip
    assert debug is True


@pytest.mark.parametrize("argv", [["positional"], ["--epochs"]])
def test_malformed_overrides_are_an_input_error(argv: list[str]) -> None:
    with pytest.raises(InputError):
        parse_overrides(argv, "hirescam train")


def test_evaluate_with_a_missing_checkpoint_is_one_line_naming_it(tmp_path: Path, capsys, tiny_synthetic) -> None:
    missing = tmp_path / "nope.pt"
    status = hirescam(["evaluate", "--dataset_dir", str(tiny_synthetic), "--ckpt_path", str(missing),
                       "--output_dir", str(tmp_path / "out")])  # fmt: skip
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 2 and len(err) == 1, err
    assert err[0].startswith("hirescam evaluate: ") and "nope.pt" in err[0] and "Traceback" not in err[0]


def test_train_with_a_missing_dataset_is_one_line(tmp_path: Path, capsys) -> None:
    status = hirescam(["train", "--dataset_dir", str(tmp_path / "no_data"), "--synthetic_profile", "None",
                       "--bundle_root", str(tmp_path)])  # fmt: skip
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 2 and len(err) == 1, err
    assert err[0].startswith("hirescam train: ") and "no_data" in err[0]


def test_train_runs_the_bundle_training(tmp_path: Path, tiny_synthetic) -> None:
    status = hirescam(["train", "--dataset_dir", str(tiny_synthetic), "--bundle_root", str(tmp_path),
                       "--spatial_size", "[64,64,48]", "--trunk", "small", "--cache", "none",
                       "--train#trainer#max_epochs", "1"])  # fmt: skip
    assert status == 0
    assert (tmp_path / "models" / "best.pt").is_file() or (tmp_path / "models" / "last.pt").is_file()
