"""Bundle overrides of hirescam_ext.reproduce.workflows and the profiles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hirescam_ext import ThreeDConv
from hirescam_ext.reproduce.profiles import MODELS, ReproProfile, get_profile
from hirescam_ext.reproduce.workflows import AxialLayout, bundle_overrides, equivalent_command
from hirescam_ext.utils.errors import InputError
from hirescam_ext.visualize import HiResCAM


def test_mask_model_turns_the_mask_loss_on_and_baseline_off() -> None:
    p = get_profile("tiny")
    assert bundle_overrides(MODELS["axialnet_mask"], p, "d", "r", 0)["use_mask_loss"] is True
    assert bundle_overrides(MODELS["axialnet"], p, "d", "r", 0)["use_mask_loss"] is False


def test_ctnet_runs_without_explainers_or_organ_iou() -> None:
    ov = bundle_overrides(MODELS["ctnet"], get_profile("tiny"), "d", "r", 0)
    assert ov["network_def"]["_target_"] == "hirescam_ext.CTNet"
    assert ov["validate#explainers"] == {}
    assert set(ov["test#metrics"]) == {"auroc"}
    assert ov["train#network"] == "@network"


def test_threedconv_runs_with_the_configs_explainers() -> None:
    ov = bundle_overrides(MODELS["threedconv"], get_profile("tiny"), "d", "r", 0)
    assert "validate#explainers" not in ov  # the evaluator brings 3D maps to the region layout itself


def test_axial_layout_wrapper_permutes_3d_maps_to_the_attention_grid() -> None:
    net = ThreeDConv(n_classes=4, volume_size=(32, 32, 24), channels=(4, 4, 4, 4), reduce_channels=(4, 4),
                     conv_padding=1).eval()
    x = torch.rand(1, 1, 32, 32, 24)
    raw = HiResCAM(net).compute_raw(x)
    permuted = AxialLayout(HiResCAM(net)).compute_raw(x)
    assert torch.equal(permuted, raw.permute(0, 1, 4, 2, 3))


def test_imagenet_model_without_weights_is_refused() -> None:
    with pytest.raises(InputError, match="ImageNet"):
        bundle_overrides(MODELS["axialnet_imagenet"], get_profile("tiny"), "d", "r", 0)


def test_equivalent_command_names_configs_and_overrides() -> None:
    ov = bundle_overrides(MODELS["maxpool"], get_profile("tiny"), "d", "r", 2)
    cmd = equivalent_command(["configs/train.json"], ov)
    assert cmd.startswith("python -m monai.bundle run --config_file configs/train.json")
    assert "--slice_pooling max" in cmd and "--seed 2" in cmd


def test_unknown_profile_or_model_is_an_input_error() -> None:
    with pytest.raises(InputError):
        get_profile("huge")
    with pytest.raises(InputError):
        get_profile("tiny", models=("resnet50",))


def test_profile_comes_back_from_its_json_record() -> None:

    for name in ("tiny", "reference"):
        p = get_profile(name)
        assert ReproProfile.from_dict(json.loads(json.dumps(p.to_dict()))) == p


def test_profile_record_with_an_unknown_or_missing_field_is_refused() -> None:
    record = get_profile("tiny").to_dict()
    with pytest.raises(ValueError, match="unknown profile fields"):
        ReproProfile.from_dict({**record, "colour": "blue"})
    with pytest.raises(ValueError):
        ReproProfile.from_dict({k: v for k, v in record.items() if k != "trunk"})


def test_profile_record_written_before_a_field_existed_takes_its_default() -> None:
    """The committed results' records predate ``custom_conv_kernel``; ``--report-from`` must still read them."""
    record = {k: v for k, v in get_profile("quick").to_dict().items() if k != "custom_conv_kernel"}
    assert ReproProfile.from_dict(record).custom_conv_kernel == 3


def test_quick_all_profile_runs_every_paper_model_with_three_seeds() -> None:
    from hirescam_ext.reproduce.profiles import PAPER_MODELS

    p = get_profile("quick_all")
    assert p.models == PAPER_MODELS and len(p.seeds) >= 3


def test_quick_profile_trains_the_shipped_recipe_on_scans_resampled_to_the_network_grid() -> None:
    p = get_profile("quick")
    assert set(p.models) == {"axialnet", "axialnet_mask"}
    ov = bundle_overrides(MODELS["axialnet_mask"], p, "d", "r", 0)
    assert ov["trunk"] == "small16" and ov["density_bands"] is True and ov["use_mask_loss"] is True
    assert ov["spacing"] == [5.8, 5.8, 6.4] and ov["spatial_size"] == [64, 64, 48]
    assert tuple(p.synth_shape) == (128, 128, 96)
    # the shipped models' optimizer, schedule and batch (scripts/train_reference.py's recipe)
    assert (ov["optimizer_name"], ov["learning_rate"], ov["lr_schedule"]) == ("adam", 2e-3, "warmup_cosine")
    assert ov["batch_size"] == 16 and ov["train#trainer#max_epochs"] == 56


def test_quick_profile_trains_its_pair_at_the_same_time_on_a_larger_training_split() -> None:
    p = get_profile("quick")
    assert p.parallel_runs == 2
    assert p.split_fractions is not None and p.split_fractions[0] == 0.7 and abs(sum(p.split_fractions) - 1) < 1e-9


def test_profiles_without_the_branch_or_a_grid_spacing_leave_both_to_the_configs() -> None:
    """The runs recorded before these switches existed keep their identity (and are reused)."""
    ov = bundle_overrides(MODELS["axialnet"], get_profile("quick_all"), "d", "r", 0)
    assert "density_bands" not in ov and "spacing" not in ov


def _profile_from_command_line(*argv: str) -> ReproProfile:
    from hirescam_ext.reproduce.driver import _parser, profile_from_args

    return profile_from_args(_parser().parse_args(list(argv)))


def test_custom_conv_kernel_one_keeps_the_grid_of_a_profile_that_keeps_the_trunks_grid() -> None:
    from hirescam_ext.reproduce.workflows import region_grid

    p = _profile_from_command_line("--profile", "quick", "--custom-conv-kernel", "1")
    assert (p.custom_conv_kernel, p.custom_conv_padding) == (1, 0)
    assert region_grid(MODELS["axialnet"], p) == region_grid(MODELS["axialnet"], get_profile("quick")) == (16, 4, 4)
    ov = bundle_overrides(MODELS["axialnet_mask"], p, "d", "r", 0)
    assert (ov["custom_conv_kernel"], ov["custom_conv_padding"]) == (1, 0)
    assert "'custom_conv_kernel': 1" in p.note  # the report records the override


def test_custom_conv_kernel_keeps_the_valid_padding_of_the_papers_profile() -> None:
    p = _profile_from_command_line("--profile", "full", "--custom-conv-kernel", "5")
    assert (p.custom_conv_kernel, p.custom_conv_padding) == (5, 0)
    p = _profile_from_command_line("--profile", "quick", "--custom-conv-kernel", "5")
    assert (p.custom_conv_kernel, p.custom_conv_padding) == (5, 2)  # a profile that keeps the grid keeps it


def test_the_papers_kernel_adds_no_override_so_finished_runs_keep_their_identity() -> None:
    assert "custom_conv_kernel" not in bundle_overrides(MODELS["axialnet"], get_profile("quick"), "d", "r", 0)
    p = _profile_from_command_line("--profile", "quick", "--custom-conv-kernel", "3")
    assert bundle_overrides(MODELS["axialnet"], p, "d", "r", 0) == bundle_overrides(
        MODELS["axialnet"], get_profile("quick"), "d", "r", 0)


@pytest.mark.parametrize("kernel", ["0", "2"])
def test_an_even_or_empty_custom_conv_kernel_is_an_input_error(kernel: str) -> None:
    with pytest.raises(InputError, match="--custom-conv-kernel"):
        _profile_from_command_line("--profile", "quick", "--custom-conv-kernel", kernel)


def test_spatial_size_of_the_rendered_shape_trains_the_scans_as_rendered() -> None:
    from hirescam_ext.reproduce.workflows import region_grid

    p = _profile_from_command_line("--profile", "quick", "--spatial-size", "128", "128", "96")
    assert p.spatial_size == (128, 128, 96) and p.spacing is None
    assert p.synth_shape == get_profile("quick").synth_shape  # the same scans: the data folder is reused
    assert region_grid(MODELS["axialnet"], p) == (32, 8, 8)  # the small16 trunk's 8 x 8 grid
    ov = bundle_overrides(MODELS["axialnet_mask"], p, "d", "r", 0)
    assert ov["spatial_size"] == [128, 128, 96] and "spacing" not in ov  # nothing resampled
    assert "'spatial_size': [128, 128, 96]" in p.note  # the report records the override


def test_spatial_size_resamples_over_the_same_field_of_view() -> None:
    quick = get_profile("quick")
    p = _profile_from_command_line("--profile", "quick", "--spatial-size", "96", "96", "72")
    assert bundle_overrides(MODELS["axialnet"], p, "d", "r", 0)["spacing"] == list(p.spacing)
    for axis in range(3):
        assert p.spatial_size[axis] * p.spacing[axis] == pytest.approx(quick.spatial_size[axis] * quick.spacing[axis],
                                                                       rel=1e-4)


def test_spatial_size_keeps_the_rendering_of_a_profile_rendered_on_its_grid() -> None:
    p = _profile_from_command_line("--profile", "tiny", "--spatial-size", "32", "32", "24")
    assert p.synth_shape == (64, 64, 48) and p.spacing == (11.6, 11.6, 12.8)


@pytest.mark.parametrize("size", [("64", "64", "50"), ("0", "64", "48")])
def test_a_spatial_size_without_whole_slice_triplets_or_with_a_zero_is_an_input_error(size: tuple) -> None:
    with pytest.raises(InputError, match="--spatial-size"):
        _profile_from_command_line("--profile", "quick", "--spatial-size", *size)


def test_a_profile_that_only_evaluates_checkpoints_takes_the_spacing_from_them() -> None:
    ov = bundle_overrides(MODELS["axialnet"], get_profile("reference"), "d", "r", 0)
    assert "spacing" not in ov


def test_finished_runs_are_matched_by_experiment_not_by_location() -> None:
    from hirescam_ext.reproduce.driver import _experiment

    p = get_profile("tiny")
    a = bundle_overrides(MODELS["axialnet"], p, "data", "runs/a", 0, cache_dir="c1")
    b = bundle_overrides(MODELS["axialnet"], p, "/abs/data", "/abs/runs/a", 0, cache_dir="/abs/c1")
    c = bundle_overrides(MODELS["axialnet"], p, "data", "runs/a", 1, cache_dir="c1")
    assert _experiment(a) == _experiment(b)
    assert _experiment(a) != _experiment(c)


def test_finished_runs_are_matched_regardless_of_logging_handler_switches() -> None:
    from hirescam_ext.reproduce.driver import _experiment

    a = bundle_overrides(MODELS["axialnet"], get_profile("tiny"), "data", "runs/a", 0)
    moved = {k: v for k, v in a.items() if not k.endswith("#_disabled_")}
    moved["train#handlers#9#_disabled_"] = True  # the TensorBoard handler at another list position
    assert _experiment(a) == _experiment(moved)


def test_imagenet_model_passes_the_weights_to_the_bundle() -> None:
    ov = bundle_overrides(MODELS["axialnet_imagenet"], get_profile("full"), "d", "r", 0, pretrained="w.pth")
    assert ov["pretrained"] == "w.pth" and ov["trunk"] == "resnet18"


def test_full_profile_uses_the_papers_grid_and_regions() -> None:
    from hirescam_ext.reproduce.workflows import region_grid

    full = get_profile("full")
    assert region_grid(MODELS["axialnet"], full) == (135, 6, 6)
    assert bundle_overrides(MODELS["axialnet"], full, "d", "r", 0)["region_mode"] == "nearest"
    assert bundle_overrides(MODELS["axialnet"], full, "d", "r", 0)["cache"] == "none"


def test_profile_optimizer_batch_size_and_val_interval_reach_the_bundle() -> None:
    p = get_profile("tiny", optimizer_name="adam", batch_size=4, val_interval=2)
    ov = bundle_overrides(MODELS["axialnet"], p, "d", "r", 0)
    assert (ov["optimizer_name"], ov["batch_size"], ov["val_interval"]) == ("adam", 4, 2)


def test_full_profile_keeps_the_papers_sgd_and_batch_of_one() -> None:
    ov = bundle_overrides(MODELS["axialnet"], get_profile("full"), "d", "r", 0)
    assert (ov["optimizer_name"], ov["learning_rate"], ov["batch_size"]) == ("sgd", 1e-3, 1)


def test_training_validation_computes_no_explanation_maps_but_evaluation_does() -> None:
    from hirescam_ext.reproduce.workflows import training_overrides

    ov = bundle_overrides(MODELS["axialnet_mask"], get_profile("tiny"), "d", "r", 0)
    train = training_overrides(ov)
    assert train["validate#explainers"] == {}
    assert set(train["validate#additional_metrics"]) == {"val_mean_auroc"}
    assert "validate#explainers" not in ov  # the evaluation keeps the config's HiResCAM and Grad-CAM


def test_bundle_batch_size_parameter_drives_the_training_loader() -> None:
    from pathlib import Path

    cfg = json.loads((Path(__file__).resolve().parents[2] / "configs" / "train.json").read_text())
    assert cfg["batch_size"] == 1  # the paper's
    assert cfg["train"]["dataloader"]["batch_size"] == "@batch_size"


def test_command_line_overrides_reach_the_profile_and_its_note() -> None:
    from hirescam_ext.reproduce.driver import _parser, profile_from_args

    args = _parser().parse_args(["--profile", "quick", "--scans", "400", "--optimizer", "sgd", "--lr", "0.01"])
    p = profile_from_args(args)
    assert (p.n_scans, p.optimizer_name, p.learning_rate) == (400, "sgd", 0.01)
    assert "'scans': 400" in p.note and "'optimizer': 'sgd'" in p.note


def test_jobs_on_the_command_line_sets_the_runs_at_a_time() -> None:
    from hirescam_ext.reproduce.driver import _parser, profile_from_args

    p = profile_from_args(_parser().parse_args(["--profile", "quick_all", "--jobs", "2"]))
    assert p.parallel_runs == 2 and "'jobs': 2" in p.note


def test_a_dataset_on_the_command_line_is_used_instead_of_generating_the_profiles(tmp_path: Path) -> None:
    from hirescam_ext.reproduce.driver import prepare_dataset
    from hirescam_ext.synthetic.generator import generate_dataset

    data = generate_dataset(tmp_path / "plaques", profile="tiny", n_scans=4, seed=1, plaque_scale=3, progress=False)
    profile = _profile_from_command_line("--profile", "tiny", "--dataset", str(data))
    assert profile.dataset == str(data) and "'dataset'" in profile.note
    assert prepare_dataset(profile, tmp_path / "work") == data.resolve()
    assert not (tmp_path / "work").exists()  # nothing generated


def test_a_dataset_that_is_not_a_finished_synthetic_folder_is_refused_naming_its_meta_json(tmp_path: Path) -> None:
    from hirescam_ext.reproduce.driver import prepare_dataset

    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "meta.json").write_text(json.dumps({"complete": False}))
    for folder in (tmp_path / "half", tmp_path / "missing"):
        with pytest.raises(InputError, match="meta.json.*not a finished synthetic dataset"):
            prepare_dataset(_profile_from_command_line("--profile", "tiny", "--dataset", str(folder)), tmp_path)


def test_command_line_without_overrides_keeps_the_profile() -> None:
    from hirescam_ext.reproduce.driver import _parser, profile_from_args

    assert profile_from_args(_parser().parse_args(["--profile", "quick"])) == get_profile("quick")


def test_disabled_tensorboard_handlers_are_the_configs_tensorboard_handlers() -> None:

    from hirescam_ext.reproduce.workflows import _TENSORBOARD_HANDLERS

    config = json.loads((Path(__file__).resolve().parents[2] / "configs" / "train.json").read_text())
    for ref in _TENSORBOARD_HANDLERS:
        section, _, index = ref.split("#")
        assert config[section]["handlers"][int(index)]["_target_"] == "TensorBoardStatsHandler", ref


def test_the_command_leaves_the_callers_progress_bars_and_logging_as_they_were(tmp_path: Path, monkeypatch) -> None:
    """``main`` silences tqdm and INFO logs while it runs; a test session or notebook that calls it keeps both."""
    import logging
    import os

    from hirescam_ext.reproduce.driver import main

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    before = logging.root.manager.disable
    assert main(["--profile", "tiny", "--checkpoint", "axialnet", "--work-dir", str(tmp_path)]) == 2  # an input error
    assert "TQDM_DISABLE" not in os.environ and logging.root.manager.disable == before
