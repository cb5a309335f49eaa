"""Nothing is lost: a training run killed with SIGKILL resumes from ``last.pt`` and ends exactly like a run that was
never interrupted; a NaN loss stops training with a message that names the scan and leaves ``last.pt`` untouched."""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import torch

from .conftest import kill_when, run_training


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sigkill_after_first_checkpoint_then_resume_gives_identical_weights(
    uninterrupted: Path, tiny_synthetic: Path, tmp_path: Path
) -> None:
    root = tmp_path / "killed"
    kill_when(root, tiny_synthetic, 3, root / "models" / "last.pt")
    killed_at = _load(root / "models" / "last.pt")["trainer"]["epoch"]  # the file on disk is complete and loads
    assert 1 <= killed_at < 3, f"kill landed at epoch {killed_at}"
    proc = run_training(root, tiny_synthetic, 3, "--resume", "true")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "resumed from" in proc.stdout + proc.stderr

    reference, resumed = _load(uninterrupted / "models" / "last.pt"), _load(root / "models" / "last.pt")
    assert resumed["trainer"] == reference["trainer"] == {"epoch": 3, "iteration": 21}
    assert reference["model"].keys() == resumed["model"].keys()
    for key, value in reference["model"].items():
        assert torch.equal(value, resumed["model"][key]), f"weights differ after resume: {key}"
    for a, b in zip(reference["optimizer"]["state"].values(), resumed["optimizer"]["state"].values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    assert resumed["early_stopping"] == reference["early_stopping"]
    assert resumed["lr_scheduler"] == reference["lr_scheduler"]
    assert torch.equal(resumed["rng"]["torch"], reference["rng"]["torch"])
    best_ref, best_res = _load(uninterrupted / "models" / "best.pt"), _load(root / "models" / "best.pt")
    assert best_ref["trainer"] == best_res["trainer"]


def test_sigkill_during_checkpoint_write_keeps_previous_checkpoint(tmp_path: Path) -> None:
    """A process killed inside ``torch.save`` leaves the previous ``last.pt`` intact (temporary name + rename)."""
    last = tmp_path / "last.pt"
    torch.save({"trainer": {"epoch": 1}}, last)
    before = _digest(last)
    script = (
        "import os, signal, torch\n"
        "from hirescam_ext.utils.io import atomic_write\n"
        f"with atomic_write({str(last)!r}) as tmp:\n"
        "    open(tmp, 'wb').write(b'PK half a zip file')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert _digest(last) == before
    assert _load(last)["trainer"]["epoch"] == 1


def test_nan_loss_stops_training_naming_the_scan_and_keeps_last_checkpoint(
    uninterrupted: Path, tmp_path: Path, tiny_synthetic: Path
) -> None:
    root = tmp_path / "nan"
    shutil.copytree(uninterrupted, root)
    before = _digest(root / "models" / "last.pt")
    best_before = _digest(root / "models" / "best.pt")
    proc = run_training(root, tiny_synthetic, 4, "--resume", "true", "--mask_lambda", "$float('nan')")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert proc.returncode != -signal.SIGKILL
    assert "NonFiniteLossError" in text and "non-finite training loss" in text
    accessions = {p.name.split(".")[0] for p in (tiny_synthetic / "images").glob("*.nii.gz")}
    line = next(x for x in text.splitlines() if "non-finite training loss" in x)
    assert any(acc in line for acc in accessions), line
    assert "epoch 4, iteration 22" in line
    assert _digest(root / "models" / "last.pt") == before
    assert _digest(root / "models" / "best.pt") == best_before


def test_temporary_file_of_an_interrupted_save_is_removed_and_never_loaded(tmp_path: Path) -> None:
    from hirescam_ext.engines.checkpoint import TrainingCheckpointer

    net = torch.nn.Linear(2, 2)
    models = tmp_path / "models"
    models.mkdir()
    stale = models / ".last.pt.abc123.tmp.pt"
    stale.write_bytes(b"PK half written")
    (models / "epochs").mkdir()
    stale_epoch = models / "epochs" / ".epoch_7.pt.def456.tmp.pt"  # a kept epoch's save (keep_every)
    stale_epoch.write_bytes(b"PK half written")
    other = models / "notes.txt"
    other.write_text("keep me")
    ckpt = TrainingCheckpointer(models, net, torch.optim.SGD(net.parameters(), lr=0.1), resume=True)
    assert ckpt.remove_stale_temporaries() == [stale, stale_epoch]
    assert not stale.exists() and not stale_epoch.exists() and other.exists()


def _checkpointer(models: Path, net: torch.nn.Module):
    from ignite.engine import Engine

    from hirescam_ext.engines.checkpoint import TrainingCheckpointer

    ckpt = TrainingCheckpointer(models, net, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9), resume=True)
    engine = Engine(lambda e, b: None)
    ckpt.attach(engine)
    return ckpt, engine


def test_resume_from_a_corrupt_last_checkpoint_names_the_file(tmp_path: Path) -> None:
    import pytest

    from hirescam_ext.utils.errors import InputError

    models = tmp_path / "models"
    models.mkdir()
    (models / "last.pt").write_bytes(b"PK\x03\x04 truncated by a full disk")
    net = torch.nn.Linear(2, 2)
    ckpt, engine = _checkpointer(models, net)
    with pytest.raises(InputError) as info:
        engine.run([0], max_epochs=1)
    assert info.value.path == str(models / "last.pt") and "cannot resume" in info.value.problem


def test_resume_with_a_checkpoint_of_another_network_loads_nothing(tmp_path: Path) -> None:
    import pytest

    from hirescam_ext.utils.errors import InputError

    models = tmp_path / "models"
    models.mkdir()
    other = torch.nn.Linear(2, 3)
    opt = torch.optim.SGD(other.parameters(), lr=0.5, momentum=0.9)
    torch.save({"model": other.state_dict(), "optimizer": opt.state_dict(), "trainer": {"epoch": 4, "iteration": 9}},
               models / "last.pt")  # fmt: skip
    net = torch.nn.Linear(2, 2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ckpt, engine = _checkpointer(models, net)
    with pytest.raises(InputError, match="checkpoint does not match the network.*nothing loaded"):
        engine.run([0], max_epochs=1)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert ckpt.optimizer.param_groups[0]["lr"] == 0.1


def test_training_with_too_many_nan_scans_stops_naming_the_file(tiny_synthetic: Path, tmp_path: Path) -> None:
    import json

    import nibabel as nib
    import numpy as np

    data = tmp_path / "data"
    shutil.copytree(tiny_synthetic, data)
    image = data / json.loads((data / "datalist.json").read_text())["training"][2]["image"]
    original = nib.load(image)
    values = np.asarray(original.dataobj).astype(np.float32)
    values[10:12, 10:12, 10:12] = np.nan
    nib.save(nib.Nifti1Image(values, original.affine), image)
    root = tmp_path / "run"
    proc = run_training(root, data, 1)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "TooManyFailedItemsError: 1 of 7 training scans failed to load" in text  # 1 of 7 > max_failed_fraction
    assert f"{image}: 8 of 196608 voxels are NaN or infinite" in text
    assert not (root / "models" / "last.pt").exists()
