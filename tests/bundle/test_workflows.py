"""The bundle workflows, run as a user runs them: ``python -m monai.bundle run`` in a subprocess, tiny config."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from hirescam_ext import AxialNet


def test_train_writes_best_and_last_checkpoints(trained: Path) -> None:
    last = torch.load(trained / "models" / "last.pt", map_location="cpu", weights_only=True)
    assert (trained / "models" / "best.pt").is_file()
    assert last["trainer"]["epoch"] == 1
    assert {"model", "optimizer", "lr_scheduler", "early_stopping", "rng"} <= set(last)
    assert any((trained / "outputs" / "tensorboard").iterdir())
    failures = trained / "outputs" / "training_failures.csv"  # written only when a scan failed
    assert not failures.exists() or len(failures.read_text().strip().splitlines()) <= 1


def test_train_keeps_the_learning_curve_one_line_per_epoch(trained: Path) -> None:
    from hirescam_ext.handlers import read_history

    (entry,) = read_history(trained / "outputs" / "training_history.jsonl")
    assert entry["epoch"] == 1 and {"class_loss", "val_loss"} <= set(entry)


def test_checkpoints_carry_the_model_settings(trained: Path) -> None:
    for name in ("best.pt", "last.pt"):
        settings = torch.load(trained / "models" / name, map_location="cpu", weights_only=True)["model_settings"]
        net = settings["network_def"]
        assert net["_target_"] == "hirescam_ext.AxialNet" and net["trunk"] == "small", name
        assert net["spatial_size"] == [64, 64, 48] and net["custom_conv_padding"] == 1
        pre = settings["preprocessing"]
        assert pre["spacing"] == [5.8, 5.8, 6.4]  # the tiny profile's spacing, from the dataset's meta.json
        assert pre["hu_range"] == [-1000, 800] and pre["center"] == -0.449
        grid = AxialNet.attention_grid((64, 64), z=48, trunk="small", custom_conv_padding=1)
        assert len(settings["label_names"]) == 80 and settings["attention_grid"] == list(grid)
        assert settings["package_version"] and settings["data"]["generator_version"]


def test_train_resumes_from_last_checkpoint(trained: Path, tiny_synthetic: Path, tmp_path: Path, bundle_tools) -> None:
    bundle_run, TINY = bundle_tools.run, bundle_tools.tiny
    root = tmp_path / "resumed"
    shutil.copytree(trained, root)
    proc = bundle_run(
        "train.json",
        args=["--bundle_root", str(root), "--dataset_dir", str(tiny_synthetic), "--train#trainer#max_epochs", "2",
              "--resume", "true", "--keep_epoch_every", "1", *TINY],
        cwd=root,
    )  # fmt: skip
    last = torch.load(root / "models" / "last.pt", map_location="cpu", weights_only=True)
    assert last["trainer"]["epoch"] == 2
    assert "resumed from" in proc.stdout + proc.stderr
    assert "Epoch[1] Complete" not in proc.stdout  # epoch 1 was not trained again
    lines = (root / "outputs" / "training_history.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]  # the learning curve goes on
    # --keep_epoch_every reaches the checkpointer: the epoch trained by this run is kept (epoch 1 was not asked for)
    assert [p.name for p in (root / "models" / "epochs").iterdir()] == ["epoch_2.pt"]


def test_train_fine_tunes_from_another_runs_checkpoint(
    trained: Path, tiny_synthetic: Path, tmp_path: Path, bundle_tools
) -> None:
    start = trained / "models" / "best.pt"
    root = tmp_path / "finetuned"
    root.mkdir()
    proc = bundle_tools.run(
        "train.json",
        args=["--bundle_root", str(root), "--dataset_dir", str(tiny_synthetic), "--train#trainer#max_epochs", "1",
              "--init_ckpt", str(start), "--learning_rate", "0", *bundle_tools.tiny],
        cwd=root,
    )  # fmt: skip
    assert f"training starts from the weights of {start}" in proc.stdout + proc.stderr
    last = torch.load(root / "models" / "last.pt", map_location="cpu", weights_only=True)
    assert last["model_settings"]["initialized_from"]["sha256"] == hashlib.sha256(start.read_bytes()).hexdigest()
    began = torch.load(start, map_location="cpu", weights_only=True)["model"]
    weights = [k for k in began if k.endswith("weight") and began[k].dim() > 1]  # convolutions and the fc layer
    assert weights and all(torch.equal(last["model"][k], began[k]) for k in weights)  # lr 0: still the start's


def test_fine_tuning_another_network_stops_before_training_naming_the_setting(
    trained: Path, tiny_synthetic: Path, tmp_path: Path, bundle_tools
) -> None:
    root = tmp_path / "mismatch"
    root.mkdir()
    proc = bundle_tools.run(
        "train.json",
        args=["--bundle_root", str(root), "--dataset_dir", str(tiny_synthetic), "--init_ckpt",
              str(trained / "models" / "best.pt"), "--spatial_size", "[64,64,48]", "--trunk", "small16", "--cache",
              "none"],
        cwd=root,
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "trunk: checkpoint 'small', configuration 'small16'" in proc.stdout + proc.stderr
    assert not (root / "models" / "last.pt").exists()


def test_evaluate_writes_tables_for_every_split(trained: Path, tiny_synthetic: Path, bundle_tools) -> None:
    bundle_run, TINY = bundle_tools.run, bundle_tools.tiny
    bundle_run(
        "train.json", "evaluate.json",
        args=["--bundle_root", str(trained), "--dataset_dir", str(tiny_synthetic), "--cache", "none"],
        cwd=trained,
    )  # fmt: skip  (network and preprocessing come from the checkpoint)
    eval_dir = trained / "outputs" / "evaluation"
    results = json.loads((eval_dir / "results.json").read_text())["results"]
    assert set(results) == {"validation", "test", "test_shifted"}
    for split, res in results.items():
        assert res["auroc"]["n_samples"] == res["n_scans"] > 0, split
        assert res["auroc"]["mean"] is None or 0.0 <= res["auroc"]["mean"] <= 1.0, split
        for method in ("hirescam", "gradcam"):
            assert res["organ_iou"][method]["n_pairs"] > 0
    thresholds = json.loads((eval_dir / "thresholds_hirescam.json").read_text())
    assert thresholds  # chosen on validation, reused on test
    table1 = (eval_dir / "table1.md").read_text()
    assert "OrganIoU HiResCAM" in table1 and "test_shifted" in table1
    assert (eval_dir / "table2.csv").is_file() and (eval_dir / "per_label_test.csv").is_file()


def test_inference_writes_maps_in_scan_geometry_and_skips_a_corrupt_scan(
    trained: Path, tiny_synthetic: Path, tmp_path: Path, bundle_tools
) -> None:
    bundle_run = bundle_tools.run
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    source = sorted((tiny_synthetic / "images").glob("*.nii.gz"))[0]
    shutil.copy(source, inputs / "good.nii.gz")
    (inputs / "broken.nii.gz").write_bytes(b"\x1f\x8b not really a gzip file")
    out = tmp_path / "out"
    proc = bundle_run(
        "inference.json",
        args=["--bundle_root", str(trained), "--input_dir", str(inputs), "--output_dir", str(out), "--top_k", "2"],
        cwd=trained,
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0, "a failed scan must give a non-zero exit status"
    assert "1 scan(s) failed" in proc.stdout + proc.stderr
    failures = list(csv.DictReader((out / "failures.csv").open()))
    assert [Path(f["source"]).name for f in failures] == ["broken.nii.gz"]
    rows = list(csv.DictReader((out / "probabilities.csv").open()))
    assert [r["scan"] for r in rows] == ["good"]
    maps = sorted((out / "good").glob("hirescam_*.nii.gz"))
    assert len(maps) == 2
    original = nib.load(source)
    written = nib.load(maps[0])
    assert written.shape == original.shape
    np.testing.assert_allclose(written.affine, original.affine, atol=1e-3)
    assert len(list((out / "good").glob("overlay_*.png"))) == 2
    assert (out / "good" / "slice_scores.png").is_file()
    assert (out / "good" / "done.json").is_file()
    result = json.loads((out / "good" / "result.json").read_text())
    assert result["checkpoint_sha256"] == hashlib.sha256((trained / "models" / "best.pt").read_bytes()).hexdigest()


def test_inference_rerun_skips_finished_scans_and_keeps_their_rows(
    trained: Path, tiny_synthetic: Path, tmp_path: Path, bundle_tools
) -> None:
    bundle_run = bundle_tools.run
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    images = sorted((tiny_synthetic / "images").glob("*.nii.gz"))
    shutil.copy(images[1], inputs / "first.nii.gz")
    out = tmp_path / "out"
    args = ["--bundle_root", str(trained), "--input_dir", str(inputs), "--output_dir", str(out),
            "--spatial_size", "[64,64,48]", "--trunk", "small"]  # fmt: skip  (equal to the checkpoint's: accepted)
    bundle_run("inference.json", args=args, cwd=trained)
    marker = out / "first" / "done.json"
    first = marker.stat().st_mtime_ns
    shutil.copy(images[2], inputs / "second.nii.gz")
    bundle_run("inference.json", args=args, cwd=trained)
    assert marker.stat().st_mtime_ns == first  # not redone
    rows = list(csv.DictReader((out / "probabilities.csv").open()))
    assert [r["scan"] for r in rows] == ["first", "second"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scans_written"] == 1 and summary["scans_in_table"] == 2


@pytest.mark.parametrize(
    "override, value, trained_with",
    [("n_classes", "5", "80"), ("trunk", "resnet18", "'small'"), ("spatial_size", "[128,128,96]", "[64, 64, 48]")],
)
def test_inference_override_that_contradicts_the_checkpoint_names_the_setting_and_both_values(
    trained: Path, tmp_path: Path, bundle_tools, override: str, value: str, trained_with: str
) -> None:
    proc = bundle_tools.run(
        "inference.json",
        args=["--bundle_root", str(trained), "--input_dir", str(trained), f"--{override}", value,
              "--output_dir", str(tmp_path / "o")],
        cwd=trained,
        check=False,
    )  # fmt: skip
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"best.pt: setting '{override}' conflicts with the checkpoint" in text
    assert f"trained with {override}={trained_with}" in text


def test_inference_with_an_old_checkpoint_names_the_likely_setting(trained: Path, tmp_path: Path, bundle_tools) -> None:
    old = tmp_path / "old.pt"
    state = torch.load(trained / "models" / "best.pt", map_location="cpu", weights_only=True)
    torch.save({"model": state["model"]}, old)  # no settings: the configuration's ResNet-18 does not fit
    proc = bundle_tools.run(
        "inference.json",
        args=["--bundle_root", str(trained), "--input_dir", str(trained), "--ckpt_path", str(old),
              "--spatial_size", "[64,64,48]", "--output_dir", str(tmp_path / "o")],
        cwd=trained,
        check=False,
    )  # fmt: skip
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "old.pt: checkpoint does not match the network" in text and "likely different: trunk" in text


def test_two_process_ddp_training_on_cpu(tiny_synthetic: Path, tmp_path: Path, bundle_tools) -> None:
    CONFIGS, TINY, _env = bundle_tools.configs, bundle_tools.tiny, bundle_tools.env
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun is installed with torch"
    files = f"['{CONFIGS / 'train.json'}','{CONFIGS / 'multi_gpu_train.json'}']"
    cmd = [
        torchrun, "--standalone", "--nnodes=1", "--nproc_per_node=2", "-m", "monai.bundle", "run",
        "--config_file", files, "--meta_file", str(CONFIGS / "metadata.json"),
        "--logging_file", str(CONFIGS / "logging.conf"),
        "--bundle_root", str(tmp_path), "--dataset_dir", str(tiny_synthetic), "--train#trainer#max_epochs", "1", *TINY,
        "--keep_epoch_every", "1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = torch.load(tmp_path / "models" / "last.pt", map_location="cpu", weights_only=True)
    assert last["trainer"]["epoch"] == 1
    # each rank saw half of the training scans (DistributedSampler), so the epoch had ceil(n/2) iterations
    n_train = len(json.loads((tiny_synthetic / "datalist.json").read_text())["training"])
    assert last["trainer"]["iteration"] == -(-n_train // 2)
    history = (tmp_path / "outputs" / "training_history.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(history) == 1  # rank 0 alone writes the learning curve
    assert [p.name for p in (tmp_path / "models" / "epochs").iterdir()] == ["epoch_1.pt"]  # rank 0 alone keeps it


def test_two_process_evaluation_shards_the_scans_and_gathers_the_same_numbers(
    trained: Path, tmp_path: Path, bundle_tools
) -> None:
    """``multi_gpu_evaluate.json`` under torchrun (2 gloo processes): each rank evaluates half of every split, and
    the gathered AUROC, OrganIoU and scan counts equal a one-process evaluation of the same checkpoint."""
    from hirescam_ext.synthetic.generator import generate_dataset

    data = generate_dataset(tmp_path / "data", profile="tiny", n_scans=24, seed=5, progress=False)
    configs = bundle_tools.configs
    common = ["--bundle_root", str(trained), "--dataset_dir", str(data), "--cache", "none",
              "--ckpt_path", str(trained / "models" / "best.pt")]  # fmt: skip
    bundle_tools.run("train.json", "evaluate.json", args=[*common, "--eval_dir", str(tmp_path / "one")], cwd=tmp_path)
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    files = f"['{configs / 'train.json'}','{configs / 'evaluate.json'}','{configs / 'multi_gpu_evaluate.json'}']"
    logs = tmp_path / "rank_logs"  # one file per rank: the two progress bars cannot interleave
    cmd = [torchrun, "--standalone", "--nnodes=1", "--nproc_per_node=2", "--log-dir", str(logs), "--redirects", "3",
           "-m", "monai.bundle", "run",
           "--config_file", files, "--meta_file", str(configs / "metadata.json"),
           "--logging_file", str(configs / "logging.conf"), *common, "--eval_dir", str(tmp_path / "two")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=bundle_tools.env(), capture_output=True, text=True, timeout=600)
    ranks = "".join(f"\n{p}:\n{p.read_text()[-2000:]}" for p in sorted(logs.rglob("*.log")))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + ranks
    one = json.loads((tmp_path / "one" / "results.json").read_text())["results"]
    two = json.loads((tmp_path / "two" / "results.json").read_text())["results"]
    sizes = {s: len(v) for s, v in json.loads((data / "datalist.json").read_text()).items()}
    for split in ("validation", "test", "test_shifted"):
        assert one[split]["n_scans"] == two[split]["n_scans"] == sizes[split], split
        assert one[split]["auroc"]["per_label"] == pytest.approx(two[split]["auroc"]["per_label"], nan_ok=True)
        for method in ("hirescam", "gradcam"):
            assert two[split]["organ_iou"][method]["mean"] == pytest.approx(one[split]["organ_iou"][method]["mean"])
    # each rank's progress bar counted half of the test split
    half = -(-sizes["test"] // 2)
    rank_logs = sorted(logs.rglob("stderr.log"))
    assert len(rank_logs) == 2, [str(p) for p in logs.rglob("*")]
    for log in rank_logs:
        assert f"evaluate test: [{half}/{half}]" in log.read_text(), log


def test_train_with_the_int16_memmap_cache_converting_and_augmenting_on_the_device(
    tiny_synthetic: Path, tmp_path: Path, bundle_tools
) -> None:
    """cache=memmap, cache_output=stored, augment_on_device: int16 volumes on disk and in the batch, converted by
    prepare_batch and flipped/rotated after the copy (the GPU data path, run here on CPU)."""
    tiny = [a for a in bundle_tools.tiny if a not in ("--cache", "none")]
    root = tmp_path / "memmap"
    root.mkdir()
    bundle_tools.run(
        "train.json",
        args=["--bundle_root", str(root), "--dataset_dir", str(tiny_synthetic), "--train#trainer#max_epochs", "1",
              "--cache", "memmap", "--cache_output", "stored", "--augment_on_device", "true", *tiny],
        cwd=root,
    )  # fmt: skip
    n_train = len(json.loads((tiny_synthetic / "datalist.json").read_text())["training"])
    stored = [np.load(f, mmap_mode="r") for f in (root / "cache" / "train").glob("*.int16.npy")]
    assert len(stored) == n_train and all(a.dtype == np.int16 and a.shape == (1, 64, 64, 48) for a in stored)
    last = torch.load(root / "models" / "last.pt", map_location="cpu", weights_only=True)
    assert last["trainer"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())


def test_augment_on_device_moves_the_paper_augmentation_from_the_loader_to_the_trainer(bundle_tools) -> None:
    from monai.bundle import ConfigParser

    from hirescam_ext.engines import AugmentOnDevice, PrepareBatchWithRegions

    for on_device in (False, True):
        parser = ConfigParser()
        parser.read_config(str(bundle_tools.configs / "train.json"))
        parser["augment_on_device"] = on_device
        loader = parser.get_parsed_content("train#augmentation")
        trainer_prepare = parser.get_parsed_content("train#trainer#prepare_batch")
        assert (loader.flip_prob, loader.rot_prob) == ((0.0, 0.0) if on_device else (0.5, 0.5))
        assert isinstance(trainer_prepare, AugmentOnDevice) == on_device
        if on_device:
            assert (trainer_prepare.flip_prob, trainer_prepare.rot_prob) == (0.5, 0.5)
        # validation shares the plain prepare-batch: never augmented
        assert type(parser.get_parsed_content("train#prepare_batch")) is PrepareBatchWithRegions


def test_train_config_mask_penalize_and_pool_reach_the_loss(bundle_tools) -> None:
    from monai.bundle import ConfigParser

    for penalize in ("positive", "both"):
        parser = ConfigParser()
        parser.read_config(str(bundle_tools.configs / "train.json"))
        parser["mask_penalize"] = penalize
        parser["mask_pool"] = "logit" if penalize == "both" else "element"
        loss = parser.get_parsed_content("loss").mask_loss
        assert (loss.penalize, loss.pool) == (penalize, parser["mask_pool"])


def test_train_config_records_the_training_it_runs_as_overridden(bundle_tools) -> None:
    """The checkpoint's ``training`` record holds the values in effect, also when an override bypasses a variable."""
    from monai.bundle import ConfigParser

    from hirescam_ext.engines.model_settings import TRAINING_KEYS

    parser = ConfigParser()
    parser.read_config(str(bundle_tools.configs / "train.json"))
    parser.update({"use_mask_loss": "false", "train#trainer#max_epochs": 32, "optimizer_name": "adam",
                   "region_mode": "area", "deterministic_transforms#transforms#2#area_threshold": 0.1})
    record = parser.get_parsed_content("training_record")
    assert record["epochs"] == 32 and record["optimizer"] == "adam" and record["mask_loss"] is False
    assert (record["region_mode"], record["region_area_threshold"]) == ("area", 0.1)
    assert set(TRAINING_KEYS) <= set(record)  # what scripts/train_reference.py records too


def test_checkpoints_record_how_the_model_was_trained(trained: Path) -> None:
    settings = torch.load(trained / "models" / "best.pt", map_location="cpu", weights_only=True)["model_settings"]
    assert settings["training"] == {
        "config": "configs/train.json", "epochs": 1, "optimizer": "sgd", "lr": 0.001, "batch": 1,
        "schedule": "constant", "warmup_epochs": 0, "seed": 0, "mask_loss": True, "mask_weight": 1 / 3,
        "mask_penalize": "positive", "mask_pool": "element", "region_mode": "nearest", "region_area_threshold": 0.5,
    }  # fmt: skip


def test_train_config_validation_logs_the_lowest_loss_as_the_best(bundle_tools) -> None:
    """The key metric is a loss: the evaluator's "best value" log must follow the checkpointer's ``mode: min``."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle_tools.configs / "train.json"))
    better = parser.get_parsed_content("validate#evaluator#metric_cmp_fn")
    assert better(0.086, 0.089) and not better(0.089, 0.086)


def test_train_config_custom_conv_kernel_reaches_the_network_and_keeps_the_grid(bundle_tools) -> None:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle_tools.configs / "train.json"))
    parser["spatial_size"], parser["trunk"], parser["n_classes"] = [64, 64, 48], "small", 5
    parser["custom_conv_kernel"], parser["custom_conv_padding"] = 1, 0
    net = parser.get_parsed_content("network_def")
    assert net.custom_convs.conv1.kernel_size == (1, 1)
    assert parser.get_parsed_content("attention_grid") == (16, 2, 2) and net.grid == (2, 2)
