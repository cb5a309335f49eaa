"""``hirescam reproduce`` with checkpoints trained elsewhere (``--checkpoint MODEL=PATH``, the ``reference``
profile): the run evaluates and analyses the given weights instead of training, and says so in its record."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from hirescam_ext.reproduce import main
from hirescam_ext.reproduce.profiles import get_profile
from hirescam_ext.utils.io import sha256_file


#: the training record of the checkpoints these tests make
TRAINING = {"config": "test", "epochs": 8, "optimizer": "adam", "lr": 0.002, "batch": 16, "schedule": "warmup_cosine",
            "seed": 3, "mask_loss": False}


def _tiny_checkpoint(path: Path, seed: int = 0, kernel: int = 3, grid: list[int] | None = None) -> Path:
    """An AxialNet checkpoint with model settings for the tiny profile (64 x 64 x 48, small trunk); ``kernel`` 1:
    per-cell custom convs with padding 0 (the same 2 x 2 grid); ``grid``: the attention grid its settings record."""
    from hirescam_ext.engines.model_settings import make_model_settings
    from hirescam_ext.networks import AxialNet
    from hirescam_ext.synthetic.generator import make_config

    definition = {"_target_": "hirescam_ext.AxialNet", "n_classes": 80, "spatial_size": [64, 64, 48],
                  "trunk": "small", "pretrained": None, "custom_convs": True, "custom_conv_padding": 1,
                  "slice_pooling": "mean", "norm": "batch", "custom_conv_init": "kaiming"}  # fmt: skip
    if kernel != 3:
        definition.update(custom_conv_kernel=kernel, custom_conv_padding=kernel // 2)
    torch.manual_seed(seed)
    net = AxialNet(**{k: v for k, v in definition.items() if k != "_target_"})
    config = make_config("tiny")
    settings = make_model_settings(definition, spacing=list(config.spacing), spatial_size=[64, 64, 48],
                                   hu_range=[-1000.0, 800.0], center=-0.449, attention_grid=grid or [16, 2, 2],
                                   training=TRAINING)
    torch.save({"model": net.state_dict(), "model_settings": settings, "trainer": {"epoch": 7, "iteration": 70}}, path)
    return path


def test_an_older_checkpoints_training_confounder_is_read_from_its_data_folder(tmp_path: Path) -> None:
    from hirescam_ext.reproduce.driver import _checkpoint_training

    data = tmp_path / "weak"
    data.mkdir()
    (data / "datalist.json").write_text(json.dumps({"training": []}))
    (data / "meta.json").write_text(json.dumps({"parameters": {"confounder_strength": 0.4, "shift": "reverse"}}))
    ckpt = _tiny_checkpoint(tmp_path / "old.pt")
    saved = torch.load(ckpt, weights_only=False)
    saved["model_settings"]["data"] = {"datalist": str(data / "datalist.json")}  # as written before the field
    torch.save(saved, ckpt)
    record = _checkpoint_training(ckpt)["data"]
    assert record["confounder_strength"] == 0.4 and record["confounder_shift"] == "reverse"
    (data / "meta.json").unlink()  # the folder is gone: the record stays as the checkpoint wrote it
    assert _checkpoint_training(ckpt)["data"] == {"datalist": str(data / "datalist.json")}


@pytest.fixture(scope="module")
def checkpoint_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("reproduce_checkpoint")
    ckpt = _tiny_checkpoint(root / "given.pt")
    out, work = root / "results", root / "work"
    status = main(["--profile", "tiny", "--models", "axialnet", "--checkpoint", f"axialnet={ckpt}",
                   "--out", str(out), "--work-dir", str(work)])  # fmt: skip
    assert status == 0
    return ckpt, out, work


def test_given_checkpoint_is_evaluated_instead_of_trained(checkpoint_run) -> None:
    ckpt, out, work = checkpoint_run
    run_dir = work / "runs" / "axialnet_seed0"
    assert sha256_file(run_dir / "models" / "best.pt") == sha256_file(ckpt)
    assert not (run_dir / "models" / "last.pt").exists(), "a training run would have written last.pt"
    run = json.loads((out / "results.json").read_text())["runs"]["axialnet"]["0"]
    assert run["trained_elsewhere"]["checkpoint"] == str(ckpt.resolve())
    assert run["trained_elsewhere"]["training"] == TRAINING and run["trained_elsewhere"]["saved_at_epoch"] == 7
    assert run["command_train"] is None and run["fit"] is None
    assert run["evaluation"]["test"]["auroc"]["mean"] is not None
    assert run["localization"]["n_pairs"] > 0


def test_report_names_the_checkpoint_and_has_the_pointing_game_claim(checkpoint_run) -> None:
    ckpt, out, _ = checkpoint_run
    report = (out / "REPORT.md").read_text()
    assert str(ckpt) in report and "not trained by this run" in report
    claims = {c["id"]: c for c in json.loads((out / "results.json").read_text())["claims"]}
    assert "pointing_game_3x_chance" in claims


def test_report_says_how_the_checkpoint_was_trained(checkpoint_run) -> None:
    ckpt, out, _ = checkpoint_run
    report = (out / "REPORT.md").read_text()
    assert (f"`axialnet` seed 0 = `{ckpt.resolve()}` (saved at epoch 7 of 8; Adam lr 0.002, batch 16, schedule "
            "warmup_cosine, mask loss off, training seed 3)") in report
    assert "the profile's epochs, optimizer and batch do not apply" in report


def test_a_changed_checkpoint_is_evaluated_again(checkpoint_run, tmp_path: Path) -> None:
    ckpt, out, work = checkpoint_run
    other = _tiny_checkpoint(tmp_path / "other.pt", seed=1)
    status = main(["--profile", "tiny", "--models", "axialnet", "--checkpoint", f"axialnet={other}",
                   "--out", str(tmp_path / "results"), "--work-dir", str(work)])  # fmt: skip
    assert status == 0
    run = json.loads((tmp_path / "results" / "results.json").read_text())["runs"]["axialnet"]["0"]
    assert not run.get("reused") and run["trained_elsewhere"]["checkpoint"] == str(other.resolve())
    assert sha256_file(work / "runs" / "axialnet_seed0" / "models" / "best.pt") == sha256_file(other)


def test_the_same_weights_under_another_path_are_reused_and_named_by_their_new_path(tmp_path: Path) -> None:
    ckpt, work = _tiny_checkpoint(tmp_path / "first.pt"), tmp_path / "work"
    assert main(["--profile", "tiny", "--models", "axialnet", "--checkpoint", f"axialnet={ckpt}",
                 "--out", str(tmp_path / "first"), "--work-dir", str(work)]) == 0  # fmt: skip
    moved = tmp_path / "moved.pt"
    moved.write_bytes(ckpt.read_bytes())
    status = main(["--profile", "tiny", "--models", "axialnet", "--checkpoint", f"axialnet={moved}",
                   "--out", str(tmp_path / "results"), "--work-dir", str(work)])  # fmt: skip
    assert status == 0
    run = json.loads((tmp_path / "results" / "results.json").read_text())["runs"]["axialnet"]["0"]
    assert run.get("reused") and run["trained_elsewhere"]["checkpoint"] == str(moved.resolve())
    stored = json.loads((work / "runs" / "axialnet_seed0" / "run.json").read_text())
    assert stored["trained_elsewhere"]["checkpoint"] == str(moved.resolve()), "the record on disk names it too"


def test_a_one_by_one_custom_conv_checkpoint_is_evaluated_with_its_own_padding(tmp_path: Path) -> None:
    ckpt = _tiny_checkpoint(tmp_path / "k1.pt", kernel=1)
    out, work = tmp_path / "results", tmp_path / "work"
    status = main(["--profile", "tiny", "--models", "axialnet", "--checkpoint", f"axialnet={ckpt}",
                   "--out", str(out), "--work-dir", str(work)])  # fmt: skip
    assert status == 0
    run = json.loads((out / "results.json").read_text())["runs"]["axialnet"]["0"]
    assert run["overrides"]["custom_conv_padding"] == 0  # the profile's is 1
    assert run["localization"]["n_pairs"] > 0


def test_a_checkpoint_per_seed_is_evaluated_as_that_seed(tmp_path: Path) -> None:
    first, second = _tiny_checkpoint(tmp_path / "s0.pt", seed=0), _tiny_checkpoint(tmp_path / "s1.pt", seed=1)
    out, work = tmp_path / "results", tmp_path / "work"
    status = main(["--profile", "tiny", "--models", "axialnet", "--seeds", "0", "1",
                   "--checkpoint", f"axialnet@0={first}", "--checkpoint", f"axialnet@1={second}",
                   "--out", str(out), "--work-dir", str(work)])  # fmt: skip
    assert status == 0
    runs = json.loads((out / "results.json").read_text())["runs"]["axialnet"]
    assert runs["0"]["trained_elsewhere"]["checkpoint"] == str(first.resolve())
    assert runs["1"]["trained_elsewhere"]["checkpoint"] == str(second.resolve())
    assert sha256_file(work / "runs" / "axialnet_seed1" / "models" / "best.pt") == sha256_file(second)
    assert runs["0"]["evaluation"] != runs["1"]["evaluation"], "two different networks were evaluated"


def test_a_seeds_own_checkpoint_comes_before_the_models_checkpoint_for_every_seed() -> None:
    profile = replace(get_profile("tiny"), seeds=(0, 1), checkpoints={"axialnet": "all.pt", "axialnet@1": "one.pt"})
    assert profile.checkpoint_for("axialnet", 0) == "all.pt"
    assert profile.checkpoint_for("axialnet", 1) == "one.pt"
    assert profile.checkpoint_for("axialnet_mask", 1) is None
    profile.check_checkpoints()  # seed 0 is covered by the plain key


@pytest.mark.parametrize(
    ("checkpoints", "message"),
    [
        ({"axialnet@0": "a.pt"}, "not for [1]"),  # seed 1 would be trained here
        ({"axialnet@0": "a.pt", "axialnet@1": "b.pt", "axialnet@2": "c.pt"}, "seed 2 is not in this run"),
        ({"axialnet_mask@0": "a.pt"}, "is not in this run"),
    ],
)
def test_checkpoints_that_do_not_cover_the_runs_seeds_are_refused(checkpoints: dict[str, str], message: str) -> None:
    from hirescam_ext.utils.errors import InputError

    profile = replace(get_profile("tiny"), models=("axialnet",), seeds=(0, 1), checkpoints=checkpoints)
    with pytest.raises(InputError, match=re.escape(message)):
        profile.check_checkpoints()


def test_a_checkpoint_seed_that_is_not_an_integer_is_a_one_line_error(capsys, tmp_path: Path) -> None:
    assert main(["--profile", "tiny", "--checkpoint", "axialnet@one=x.pt", "--work-dir", str(tmp_path)]) == 2
    assert "must be an integer" in capsys.readouterr().err


def test_checkpoint_overrides_take_the_padding_from_the_checkpoint(tmp_path: Path) -> None:
    from hirescam_ext.reproduce.workflows import checkpoint_overrides

    k1 = _tiny_checkpoint(tmp_path / "k1.pt", kernel=1)
    assert checkpoint_overrides(k1, (16, 2, 2)) == {"custom_conv_padding": 0}
    assert checkpoint_overrides(_tiny_checkpoint(tmp_path / "k3.pt"), (16, 2, 2)) == {"custom_conv_padding": 1}


def test_checkpoint_with_another_attention_grid_is_refused_by_name(tmp_path: Path) -> None:
    from hirescam_ext.reproduce.workflows import checkpoint_overrides
    from hirescam_ext.utils.errors import InputError

    ckpt = _tiny_checkpoint(tmp_path / "other.pt", grid=[16, 4, 4])
    with pytest.raises(InputError, match="other.pt.*attention grid"):
        checkpoint_overrides(ckpt, (16, 2, 2))


@pytest.mark.parametrize("entry", ["axialnet", "nosuchmodel=x.pt", "axialnet="])
def test_malformed_checkpoint_option_is_a_one_line_error(entry: str, capsys, tmp_path: Path) -> None:
    assert main(["--profile", "tiny", "--checkpoint", entry, "--work-dir", str(tmp_path)]) == 2
    assert "MODEL=PATH" in capsys.readouterr().err


def test_missing_checkpoint_file_is_named(capsys, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pt"
    status = main(["--profile", "tiny", "--models", "axialnet", "--checkpoint", f"axialnet={missing}",
                   "--out", str(tmp_path / "r"), "--work-dir", str(tmp_path / "w")])  # fmt: skip
    assert status == 2
    assert "nope.pt" in capsys.readouterr().err


def test_reference_profile_evaluates_the_shipped_models_on_unseen_patients() -> None:
    profile = get_profile("reference")
    assert set(profile.checkpoints) == set(profile.models) == {"axialnet", "axialnet_mask"}
    assert profile.dataset_seed == 2  # the shipped models were trained on dataset seed 1
    # made as their training scans were: rendered at 2.9 mm, resampled to the network's 5.8 mm grid
    assert profile.synth_profile == "demo" and profile.synth_shape == (128, 128, 96)
    assert profile.spacing == (5.8, 5.8, 6.4) and profile.spatial_size == (64, 64, 48)


def test_choosing_models_keeps_only_their_checkpoints() -> None:
    from hirescam_ext.reproduce.driver import _parser, profile_from_args

    profile = profile_from_args(_parser().parse_args(["--profile", "reference", "--models", "axialnet"]))
    assert profile.models == ("axialnet",) and set(profile.checkpoints) == {"axialnet"}


def test_the_reference_profile_counts_visible_findings_by_the_audit_of_its_resampled_scans() -> None:
    """Its scans are rendered at 2.9 mm and resampled to 5.8 mm: the audit of that rendering decides, and the
    findings of one 2.9 mm voxel (granuloma, calcification) and the 4-9 mm nodules do not survive it."""
    from hirescam_ext.reproduce.driver import _visibility
    from hirescam_ext.synthetic.generator import GENERATOR_VERSION

    ref = _visibility(get_profile("reference"), GENERATOR_VERSION)
    assert ref["profile"] == "tiny_from_demo" and ref["visible"] is not None
    assert {"lung_granuloma", "lung_nodule"}.isdisjoint(ref["visible"]) and "heart_cardiomegaly" in ref["visible"]
    assert _visibility(get_profile("quick"), GENERATOR_VERSION)["profile"] == "tiny_from_demo"
    on_grid = _visibility(get_profile("quick_all"), GENERATOR_VERSION)
    assert on_grid["profile"] == "tiny" and "lung_granuloma" in on_grid["visible"]
