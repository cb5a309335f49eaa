"""A bad scan does not stop training: it is skipped, logged, listed once in ``training_failures.csv``, and the run
finishes with the other scans; too many bad scans stop the run with the list. Bundle runs use the tiny
configuration of ``conftest.py`` (64 x 64 x 48 voxels, small trunk, CPU)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from monai.transforms import Compose, Lambdad
from torch.utils.data import DataLoader

from hirescam_ext import AxialNet, ClassificationMaskLoss
from hirescam_ext.data import collate_skipping_failures, make_dataset
from hirescam_ext.engines import FailedItemsHandler, FailureLog, FaultTolerantTrainer, PrepareBatchWithRegions
from hirescam_ext.engines import TooManyFailedItemsError, WithAttention
from hirescam_ext.transforms import RandFlipRot90d
from hirescam_ext.utils.ct_checks import LoadCTd

from .conftest import run_training

M, SHAPE = 4, (1, 64, 64, 12)


def _corrupt(tiny_synthetic: Path, tmp_path: Path, split: str = "training", index: int = 2) -> tuple[Path, Path]:
    """A copy of the dataset whose ``split`` scan ``index`` is truncated to its first 3000 bytes."""
    data = tmp_path / "data"
    shutil.copytree(tiny_synthetic, data)
    image = data / json.loads((data / "datalist.json").read_text())[split][index]["image"]
    image.write_bytes(image.read_bytes()[:3000])
    return data, image


def _failures(root: Path) -> list[dict[str, str]]:
    with open(root / "outputs" / "training_failures.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def skipped_run(tiny_synthetic: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    """A 2-epoch tiny run (cache none, batch size 1) with one truncated training scan of 7; limit 0.2."""
    tmp = tmp_path_factory.mktemp("skipped_run")
    data, image = _corrupt(tiny_synthetic, tmp)
    proc = run_training(tmp / "run", data, 2, "--max_failed_fraction", "0.2")
    return tmp / "run", image, proc


def test_training_with_a_truncated_scan_finishes_every_epoch(skipped_run: tuple) -> None:
    root, _, proc = skipped_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = torch.load(root / "models" / "last.pt", map_location="cpu", weights_only=True)
    assert last["trainer"] == {"epoch": 2, "iteration": 14}


def test_truncated_scan_is_listed_once_over_two_epochs(skipped_run: tuple) -> None:
    root, image, _ = skipped_run
    rows = _failures(root)
    assert rows == [{"scan": str(image), "split": "training", "reason": rows[0]["reason"]}]
    assert rows[0]["reason"].startswith("cannot read the image (EOFError")


def test_truncated_scan_is_logged_as_a_warning_naming_the_file_and_the_reason(skipped_run: tuple) -> None:
    _, image, proc = skipped_run
    lines = [x for x in (proc.stdout + proc.stderr).splitlines() if "WARNING" in x and str(image) in x]
    assert len(lines) == 1, lines  # once, not once per epoch
    assert "skipping training scan" in lines[0] and "cannot read the image" in lines[0]


def test_training_around_a_truncated_scan_updates_the_weights(skipped_run: tuple) -> None:
    root, _, _ = skipped_run
    last = torch.load(root / "models" / "last.pt", map_location="cpu", weights_only=True)
    buffers = [s["momentum_buffer"] for s in last["optimizer"]["state"].values()]
    assert buffers and any(bool(b.abs().sum() > 0) for b in buffers)  # SGD steps were taken on the good scans


def test_more_failed_scans_than_max_failed_fraction_stop_with_the_list(tiny_synthetic: Path, tmp_path: Path) -> None:
    data, image = _corrupt(tiny_synthetic, tmp_path)  # 1 of 7 > the default 0.1
    root = tmp_path / "run"
    proc = run_training(root, data, 1)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "TooManyFailedItemsError: 1 of 7 training scans failed to load, more than max_failed_fraction=0.1" in text
    assert f"  {image}: cannot read the image" in text  # the first failures are listed
    assert not (root / "models" / "last.pt").exists()
    assert [r["scan"] for r in _failures(root)] == [str(image)]


def test_batches_of_two_with_a_truncated_scan_train_on_the_rest(tiny_synthetic: Path, tmp_path: Path) -> None:
    """Memory cache (the bad scan is met while the cache is filled) and batches of 2: the batch that lost the scan
    still trains on its other one."""
    data, image = _corrupt(tiny_synthetic, tmp_path)
    root = tmp_path / "run"
    proc = run_training(root, data, 1, "--cache", "memory", "--batch_size", "2", "--max_failed_fraction", "0.2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = torch.load(root / "models" / "last.pt", map_location="cpu", weights_only=True)
    assert last["trainer"] == {"epoch": 1, "iteration": 4}
    assert [(r["scan"], r["split"]) for r in _failures(root)] == [(str(image), "training")]


def test_truncated_validation_scan_is_skipped_and_listed(tiny_synthetic: Path, tmp_path: Path) -> None:
    data, image = _corrupt(tiny_synthetic, tmp_path, split="validation", index=0)  # 1 of 2
    root = tmp_path / "run"
    proc = run_training(root, data, 1, "--max_failed_fraction", "0.5")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [(r["scan"], r["split"]) for r in _failures(root)] == [(str(image), "validation")]
    assert (root / "models" / "best.pt").exists()  # val_loss was computed on the other scan


@pytest.mark.parametrize("cache", ["none", "memory", "disk"])
def test_dataset_turns_a_scan_that_fails_to_load_into_a_report(cache: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing.nii.gz"
    transform = Compose([LoadCTd(keys="image"), RandFlipRot90d(keys="image")])
    ds = make_dataset([{"image": str(missing)}], transform, cache=cache, cache_dir=tmp_path / "c", skip_failures=True)
    assert ds[0] == {"error": f"{missing}: file not found", "source": str(missing)}


def _net() -> AxialNet:
    torch.manual_seed(0)
    return AxialNet(n_classes=M, spatial_size=SHAPE[1:], trunk="small", custom_conv_padding=1)


def _item(i: int) -> dict:
    g = torch.Generator().manual_seed(i)
    return {
        "image": torch.rand(SHAPE, generator=g),
        "label": torch.tensor([1.0, 0.0, 1.0, 0.0]),
        "regions": (torch.rand(M, 4, 2, 2, generator=g) > 0.5).float(),
    }


def _load(image: torch.Tensor | str) -> torch.Tensor:
    """Stands in for the loader: a path (a scan that cannot be read) raises."""
    if isinstance(image, str):
        raise OSError(f"{image}: unreadable")
    return image


def _trainer(items: list, batch_size: int, net: AxialNet, log: FailureLog, limit: float | None = None):
    ds = make_dataset(items, Compose([Lambdad(keys="image", func=_load)]), skip_failures=True)
    trainer = FaultTolerantTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=DataLoader(ds, batch_size=batch_size, collate_fn=collate_skipping_failures),
        network=WithAttention(net),
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        loss_function=ClassificationMaskLoss(),
        prepare_batch=PrepareBatchWithRegions(),
        decollate=False,
    )
    FailedItemsHandler(log, split="training", max_failed_fraction=limit).attach(trainer)
    return trainer


def test_batch_without_a_good_scan_is_skipped_without_an_optimizer_step(tmp_path: Path) -> None:
    net = _net()
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    log = FailureLog(tmp_path / "training_failures.csv")
    trainer = _trainer([{**_item(0), "image": "bad.nii.gz"}], 1, net, log)
    trainer.run()
    assert trainer.state.iteration == 1 and trainer.state.output["loss"] is None
    assert all(torch.equal(before[k], v) for k, v in net.named_parameters())
    assert log.failed("training") == [("bad.nii.gz", "OSError: bad.nii.gz: unreadable")]


def test_batch_that_lost_a_scan_trains_on_the_rest(tmp_path: Path) -> None:
    net = _net()
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    log = FailureLog(None)
    trainer = _trainer([_item(0), {**_item(1), "image": "bad.nii.gz"}], 2, net, log)
    trainer.run()
    assert trainer.state.batch["image"].shape[0] == 1  # the good scan only
    assert any(not torch.equal(before[k], v) for k, v in net.named_parameters())
    assert len(log.failed("training")) == 1


def test_limit_is_checked_as_soon_as_it_is_exceeded(tmp_path: Path) -> None:
    log = FailureLog(tmp_path / "training_failures.csv")
    trainer = _trainer([{**_item(0), "image": "bad.nii.gz"}, _item(1), _item(2)], 1, _net(), log, limit=0.3)
    with pytest.raises(TooManyFailedItemsError, match="1 of 3 training scans failed"):
        trainer.run()
    assert (tmp_path / "training_failures.csv").read_text().splitlines()[0] == "scan,split,reason"
