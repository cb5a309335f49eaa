"""``scripts/train_reference.py``: the in-memory trainer of the shipped reference models."""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_reference.py"


@functools.cache
def _module():
    spec = importlib.util.spec_from_file_location("train_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_reference"] = module  # the generation pool pickles its worker functions by module name
    spec.loader.exec_module(module)
    return module


def test_augmentation_moves_the_allowed_regions_with_the_scan() -> None:
    """G_true on the grid stays the per-cell maximum of the scan after every flip and rot90 (as RandFlipRot90d)."""
    mod = _module()
    torch.manual_seed(0)
    x = (torch.rand(32, 1, 64, 64, 48) > 0.9995).float()  # a few hot voxels per scan
    cells = torch.nn.functional.max_pool3d(x, kernel_size=(32, 32, 3))  # [B, 1, D1=2, D2=2, H=16]
    regions = cells.repeat(1, 3, 1, 1, 1).bool()  # [B, M, D1, D2, H]
    out, moved = mod.augment(x, torch.Generator().manual_seed(1), regions)
    assert not torch.equal(out, x), "the seed should flip or rotate some scans"
    expected = torch.nn.functional.max_pool3d(out, kernel_size=(32, 32, 3)).bool()
    assert torch.equal(moved, expected.repeat(1, 3, 1, 1, 1))


def test_augmentation_without_regions_returns_none_for_them() -> None:
    mod = _module()
    out, moved = mod.augment(torch.rand(2, 1, 8, 8, 6), torch.Generator().manual_seed(0))
    assert out.shape == (2, 1, 8, 8, 6) and moved is None


def test_windowing_in_chunks_equals_windowing_the_whole_split() -> None:
    import numpy as np

    mod = _module()
    images = np.random.default_rng(0).integers(-1200, 1500, (5, 6, 6, 3)).astype(np.int16)
    index = np.array([4, 0, 2])
    whole = mod.window(torch.from_numpy(images[index])).to(torch.bfloat16)[:, None]
    chunked = mod.windowed_on(images, index, torch.device("cpu"), chunk=2)
    assert chunked.dtype == torch.bfloat16 and torch.equal(chunked, whole)


def test_slice_pooling_option_builds_the_maxpool_ablation_and_names_its_checkpoint() -> None:
    from hirescam_ext.networks import AxialNet

    mod = _module()
    definition = mod.network_definition((64, 64, 48), "small16", "max")
    net = AxialNet(**{k: v for k, v in definition.items() if k != "_target_"})
    assert net.slice_pooling == "max" and mod.network_definition((64, 64, 48), "small16")["slice_pooling"] == "mean"
    assert mod.checkpoint_name("small16", "max", False, "positive", "element") == "reference_small16_max.pt"
    assert mod.checkpoint_name("small16", "mean", True, "both", "logit") == "reference_small16_mask_both_logit.pt"
    assert mod.checkpoint_name("small16", "mean", False, "both", "logit") == "reference_small16.pt"


def test_auroc_reports_the_mean_over_the_visible_findings_beside_the_mean_over_all() -> None:
    mod = _module()
    names = mod.LABEL_NAMES
    labels = torch.zeros(8, len(names))
    labels[:4, 0] = 1
    labels[:4, 1] = 1
    logits = torch.zeros(8, len(names))
    logits[:4, 0] = 1.0  # label 0 ranked perfectly, label 1 not at all
    out = mod.auroc(logits, labels, visible=(names[0],))
    assert out["mean"] == 0.75 and out["mean_visible"] == 1.0
    assert mod.auroc(logits, labels)["mean_visible"] is None


def test_plain3d_option_builds_the_global_pooling_baseline_and_names_its_checkpoint() -> None:
    from hirescam_ext.networks import Plain3DCNN

    mod = _module()
    definition = mod.network_definition((64, 64, 48), "small16", model="plain3d")
    assert definition["_target_"] == "hirescam_ext.Plain3DCNN"
    net = Plain3DCNN(**{k: v for k, v in definition.items() if k != "_target_"})
    assert net(torch.rand(1, 1, 64, 64, 48)).shape == (1, len(mod.LABEL_NAMES))
    assert mod.checkpoint_name("small16", "mean", False, "positive", "element", "plain3d") == "reference_plain3d.pt"


def test_plain3d_with_the_mask_loss_or_tied_cells_is_refused_before_any_data_is_generated(capsys) -> None:
    import pytest

    mod = _module()
    with pytest.raises(SystemExit) as err:
        mod.main(["--model", "plain3d", "--mask-loss", "--dry-run"])
    assert err.value.code == 2 and "--mask-loss needs AxialNet" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        mod.main(["--model", "plain3d", "--fc-init", "tied", "--dry-run"])
    assert err.value.code == 2 and "--fc-init tied" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        mod.main(["--model", "plain3d", "--fc-init", "shared", "--dry-run"])
    assert err.value.code == 2 and "--fc-init shared" in capsys.readouterr().err


def test_mask_start_epoch_trains_classification_alone_before_it_and_keeps_only_mask_loss_epochs() -> None:
    mod = _module()
    assert [mod.mask_weight_at(e, 2, 1 / 3) for e in range(4)] == [0.0, 0.0, 1 / 3, 1 / 3]
    assert [mod.mask_weight_at(e, 0, 1 / 3) for e in range(2)] == [1 / 3, 1 / 3]
    # epochs are logged 1-based: with a 2-epoch warm-up, epochs 1 and 2 had no mask loss and cannot be kept
    assert [mod.selectable_epoch(e, 2) for e in (1, 2, 3)] == [False, False, True]
    assert mod.selectable_epoch(1, 0)


def test_mask_start_epoch_run_keeps_a_mask_loss_epoch_and_records_the_warm_up(tmp_path) -> None:
    import json

    mod = _module()
    argv = ["--dry-run", "--profile", "tiny", "--scans", "12", "--workers", "1", "--trunk", "small", "--mask-loss",
            "--epochs", "2", "--mask-start-epoch", "1", "--out", str(tmp_path)]
    assert mod.main(argv) == 0
    report = json.loads((tmp_path / "reference_training.json").read_text())
    assert report["best_epoch"] == 2 and report["mask_start_epoch"] == 1
    saved = torch.load(tmp_path / report["checkpoint"], weights_only=False)
    assert saved["trainer"]["epoch"] == 2 and saved["model_settings"]["training"]["mask_start_epoch"] == 1


def test_the_checkpoint_records_the_training_keys_the_bundle_records(tmp_path) -> None:
    from hirescam_ext.engines.model_settings import TRAINING_KEYS

    argv = ["--dry-run", "--profile", "tiny", "--scans", "12", "--workers", "1", "--trunk", "small", "--epochs", "1",
            "--out", str(tmp_path)]
    assert _module().main(argv) == 0
    (ckpt,) = tmp_path.glob("*.pt")
    training = torch.load(ckpt, weights_only=False)["model_settings"]["training"]
    assert set(TRAINING_KEYS) <= set(training) and training["epochs"] == 1 and training["mask_loss"] is False


@pytest.mark.parametrize("argv, message", [
    (["--mask-start-epoch", "2", "--epochs", "4"], "needs --mask-loss"),
    (["--mask-loss", "--mask-start-epoch", "2"], "needs --epochs"),
    (["--mask-loss", "--mask-start-epoch", "4", "--epochs", "4"], "below --epochs"),
    (["--mask-loss", "--mask-start-epoch", "-1", "--epochs", "4"], "0 or more"),
])
def test_bad_mask_start_epochs_are_refused_before_any_data_is_generated(argv, message, capsys) -> None:
    mod = _module()
    with pytest.raises(SystemExit) as err:
        mod.main([*argv, "--dry-run"])
    assert err.value.code == 2 and message in capsys.readouterr().err


def test_only_labels_with_an_unknown_name_is_refused_before_any_data_is_generated(capsys) -> None:
    import pytest

    mod = _module()
    with pytest.raises(SystemExit) as err:
        mod.main(["--only-labels", "lung_groundglass,lung_glass", "--dry-run"])
    assert err.value.code == 2 and "unknown label names ['lung_glass']" in capsys.readouterr().err


def test_extra_window_option_builds_axialnet_with_a_lung_window_and_names_its_checkpoint() -> None:
    from hirescam_ext.networks import AxialNet

    mod = _module()
    definition = mod.network_definition((64, 64, 48), "small16", extra_windows=[(-1000.0, -300.0)])
    assert definition["extra_windows"] == [[-1000.0, -300.0]] and "extra_windows" not in mod.network_definition(
        (64, 64, 48), "small16")
    net = AxialNet(**{k: v for k, v in definition.items() if k != "_target_"})
    assert net.trunk.conv1.in_channels == 6
    name = mod.checkpoint_name("small16", "mean", True, "positive", "element", extra_windows=[(-1000.0, -300.0)])
    assert name == "reference_small16_win-1000_-300_mask.pt"


def test_custom_conv_kernel_option_builds_per_cell_convs_on_the_same_grid_and_names_its_checkpoint() -> None:
    from hirescam_ext.networks import AxialNet

    mod = _module()
    definition = mod.network_definition((64, 64, 48), "small16", density_bands=True, custom_conv_kernel=1)
    assert definition["custom_conv_kernel"] == 1 and definition["custom_conv_padding"] == 0
    paper = mod.network_definition((64, 64, 48), "small16", density_bands=True)
    assert "custom_conv_kernel" not in paper and paper["custom_conv_padding"] == 1
    net = AxialNet(**{k: v for k, v in definition.items() if k != "_target_"})
    assert net.grid == AxialNet(**{k: v for k, v in paper.items() if k != "_target_"}).grid == (4, 4)
    assert net.custom_convs.conv1.kernel_size == (1, 1)
    name = mod.checkpoint_name("small16", "mean", True, "positive", "element", density_bands=True,
                               custom_conv_kernel=1)
    assert name == "reference_small16_bands_k1_mask.pt"


def test_extra_window_with_plain3d_is_refused_before_any_data_is_generated(capsys) -> None:
    import pytest

    mod = _module()
    with pytest.raises(SystemExit) as err:
        mod.main(["--model", "plain3d", "--extra-window", "-1000", "-300", "--dry-run"])
    assert err.value.code == 2 and "--extra-window adds input channels" in capsys.readouterr().err


def test_density_bands_option_builds_axialnet_with_the_branch_and_names_its_checkpoint() -> None:
    from hirescam_ext.networks import AxialNet

    mod = _module()
    definition = mod.network_definition((64, 64, 48), "small16", density_bands=True)
    assert definition["density_bands"] is True
    assert "density_bands" not in mod.network_definition((64, 64, 48), "small16")
    net = AxialNet(**{k: v for k, v in definition.items() if k != "_target_"})
    assert net.use_density and net.custom_convs.conv1.in_channels == net.trunk.out_channels + net.density.out_channels
    assert mod.checkpoint_name("small16", "mean", True, "positive", "element",
                               density_bands=True) == "reference_small16_bands_mask.pt"


def test_density_bands_with_plain3d_is_refused_before_any_data_is_generated(capsys) -> None:
    import pytest

    mod = _module()
    with pytest.raises(SystemExit) as err:
        mod.main(["--model", "plain3d", "--density-bands", "--dry-run"])
    assert err.value.code == 2 and "--density-bands is a branch of AxialNet" in capsys.readouterr().err


def test_blur_augment_spreads_each_scan_evenly_on_every_axis_and_keeps_its_total() -> None:
    mod = _module()
    x = torch.zeros(3, 1, 12, 12, 9)
    x[:, 0, 6, 6, 4] = 1.0
    out = mod.blur(x, torch.Generator().manual_seed(2), 1.5)  # widths 0.92, 0.57 and 0.96 voxels
    assert out.shape == x.shape and torch.allclose(out.sum(dim=(1, 2, 3, 4)), torch.ones(3), atol=1e-5)
    for v in out[:, 0]:
        assert float(v[6, 6, 4]) < 1.0, "each scan is smoothed"
        assert float(v[5, 6, 4]) == pytest.approx(float(v[6, 5, 4]), abs=1e-6)
        assert float(v[5, 6, 4]) == pytest.approx(float(v[6, 6, 3]), abs=1e-6)
    assert torch.equal(mod.blur(x, torch.Generator().manual_seed(0), 0.0), x)


def test_negative_blur_augment_is_refused_before_any_data_is_generated(capsys) -> None:
    mod = _module()
    with pytest.raises(SystemExit) as err:
        mod.main(["--blur-augment", "-1", "--dry-run"])
    assert err.value.code == 2 and "--blur-augment must be 0 (off) or positive" in capsys.readouterr().err


def test_positive_weights_are_the_training_odds_clipped_and_one_for_labels_never_positive() -> None:
    import torch

    w = _module().positive_weights([0.5, 0.1, 0.01, 0.0, 0.8], 10.0)
    assert torch.allclose(w, torch.tensor([1.0, 9.0, 10.0, 1.0, 1.0]))


def test_negative_pos_weight_max_is_refused_before_any_data_is_generated(capsys) -> None:
    import pytest

    with pytest.raises(SystemExit) as err:
        _module().main(["--pos-weight-max", "-1", "--dry-run"])
    assert err.value.code == 2 and "--pos-weight-max" in capsys.readouterr().err


def test_density_smoothing_is_recorded_in_the_network_definition_and_the_checkpoint_name() -> None:
    from hirescam_ext.networks import AxialNet

    mod = _module()
    definition = mod.network_definition((64, 64, 48), "small16", density_bands=True, density_smoothing=0.75)
    assert definition["density_smoothing"] == 0.75
    assert "density_smoothing" not in mod.network_definition((64, 64, 48), "small16", density_bands=True)
    net = AxialNet(**{k: v for k, v in definition.items() if k != "_target_"})
    assert net.density.smoothing == 0.75
    assert mod.checkpoint_name("small16", "mean", False, "positive", "element", density_bands=True,
                               density_smoothing=0.75) == "reference_small16_bands_smooth0.75.pt"


def _usage_error(capsys, *argv: str) -> str:
    """The argument error of a (dry) run with ``argv``, which must stop before any data is generated."""
    with pytest.raises(SystemExit) as err:
        _module().main([*argv, "--dry-run"])
    assert err.value.code == 2
    return capsys.readouterr().err


def test_density_smoothing_without_the_branch_is_refused_before_any_data_is_generated(capsys) -> None:
    assert "it needs --density-bands" in _usage_error(capsys, "--density-smoothing", "1")


def test_density_context_is_recorded_in_the_network_definition_and_the_checkpoint_name() -> None:
    from hirescam_ext.networks import AxialNet

    mod = _module()
    definition = mod.network_definition((64, 64, 48), "small16", density_bands=True, density_context=True)
    assert definition["density_context"] is True
    assert "density_context" not in mod.network_definition((64, 64, 48), "small16", density_bands=True)
    assert AxialNet(**{k: v for k, v in definition.items() if k != "_target_"}).density.use_context
    assert mod.checkpoint_name("small16", "mean", True, "positive", "element", density_bands=True,
                               density_context=True) == "reference_small16_bands_context_mask.pt"


def test_density_context_without_the_branch_is_refused_before_any_data_is_generated(capsys) -> None:
    assert "it needs --density-bands" in _usage_error(capsys, "--density-context")


def test_render_profile_gives_the_same_patients_prepared_as_the_bundle_prepares_a_scan() -> None:
    """Rendered on the small profile's grid, resampled to tiny's by ct_preprocessing: same labels and splits as the
    scans rendered on tiny's grid, the same anatomy, but not the same voxels."""
    from monai.data import MetaTensor

    from hirescam_ext.synthetic.generator import generate_case, make_config
    from hirescam_ext.transforms.preprocessing import ct_preprocessing

    mod = _module()
    on_grid = mod.generate(3, "tiny", 5, 1, None)
    resampled = mod.generate(3, "tiny", 5, 1, None, render_profile="small")
    assert resampled["images"].shape == on_grid["images"].shape == (3, 64, 64, 48)
    assert resampled["images"].dtype == np.int16
    assert np.array_equal(resampled["labels"], on_grid["labels"]) and resampled["splits"] == on_grid["splits"]
    a, b = on_grid["images"].astype(np.float32), resampled["images"].astype(np.float32)
    assert not np.array_equal(a, b) and np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9
    case = generate_case(1, 5, config=make_config("small", n_scans=3))
    prepare = ct_preprocessing(keys=["image"], label_map_keys=[], spacing=(5.8, 5.8, 6.4), spatial_size=(64, 64, 48),
                               hu_range=None, center=None, load=False)
    image = prepare({"image": MetaTensor(torch.from_numpy(case.image)[None].float(),
                                         affine=torch.as_tensor(case.affine))})["image"][0]
    assert np.array_equal(resampled["images"][1], np.rint(image.numpy()).astype(np.int16))


def test_allowed_regions_of_scans_rendered_finer_come_from_the_organ_map_on_the_network_grid() -> None:
    """A scan rendered on the demo grid (96 slices) and resampled to tiny's: its G_true is that of its organ map
    resampled the same way (as the bundle's AllowedRegionsd sees it), and it holds the lesions of its findings."""
    from hirescam_ext.labels import LABEL_NAMES
    from hirescam_ext.regions.allowed import allowed_regions
    from hirescam_ext.regions.coverage import lesion_coverage
    from hirescam_ext.synthetic.generator import generate_case, make_config
    from hirescam_ext.transforms.preprocessing import prepare_volumes

    mod = _module()
    data = mod.generate(3, "tiny", 4, 1, None, grid=(4, 4, 16), render_profile="demo")
    net = make_config("tiny", n_scans=3)
    covered = []
    for i in range(3):
        case = generate_case(i, 4, config=make_config("demo", n_scans=3))
        _, maps = prepare_volumes(case.image, case.affine, net.spacing, net.shape,
                                  {"organs": case.organs, "lesions": np.moveaxis(case.lesions, 3, 0)})
        expected = allowed_regions(maps["organs"].numpy(), case.label, case.locations, grid=(4, 4, 16),
                                   mode=mod.REGION_MODE, area_threshold=mod.REGION_AREA_THRESHOLD, dtype=torch.bool)
        assert np.array_equal(data["regions"][i], expected.numpy())
        for k, finding in enumerate(case.findings):
            if finding.label in LABEL_NAMES and maps["lesions"][k].any():
                g = data["regions"][i][LABEL_NAMES.index(finding.label)]
                covered.append(lesion_coverage(g, maps["lesions"][k].numpy() > 0))
    assert covered and np.nanmean(covered) > 0.5, covered


def test_data_cache_gives_back_what_was_generated_and_regenerates_for_regions_it_lacks(tmp_path) -> None:
    mod = _module()
    logs: list[str] = []
    first = mod.cached_generate(str(tmp_path), 3, "tiny", 2, 1, None, log=logs.append)
    again = mod.cached_generate(str(tmp_path), 3, "tiny", 2, 1, None, log=logs.append)
    assert [m.split(" ")[1] for m in logs] == ["kept", "read"]
    assert np.array_equal(first["images"], again["images"]) and np.array_equal(first["labels"], again["labels"])
    assert again["splits"] == first["splits"] and again["regions"] is None
    with_regions = mod.cached_generate(str(tmp_path), 3, "tiny", 2, 1, None, grid=(4, 4, 16), log=logs.append)
    assert logs[-1].startswith("scans kept") and with_regions["regions"].shape == (3, 80, 4, 4, 16)
    read = mod.cached_generate(str(tmp_path), 3, "tiny", 2, 1, None, grid=(4, 4, 16), log=logs.append)
    assert logs[-1].startswith("scans read") and np.array_equal(read["regions"], with_regions["regions"])
    assert len(list(tmp_path.iterdir())) == 1, "one file per dataset, no part file left"
    assert next(tmp_path.iterdir()).name.endswith(f"_c{mod.CACHE_FORMAT}.npz"), "caches of another format are not read"


def _saved_reference(path, shape=(64, 64, 48)):
    """A freshly initialized small AxialNet saved as this script saves its checkpoints."""
    from hirescam_ext.engines.model_settings import make_model_settings
    from hirescam_ext.networks import AxialNet

    mod = _module()
    definition = mod.network_definition(shape, "small", density_bands=True)
    torch.manual_seed(0)
    net = AxialNet(**{k: v for k, v in definition.items() if k != "_target_"}).eval()
    settings = make_model_settings(definition, [5.8, 5.8, 6.4], list(shape), [-1000.0, 800.0], -0.449)
    torch.save({"model": net.state_dict(), "model_settings": settings}, path)
    return net


def test_evaluate_scores_a_saved_checkpoint_on_the_three_held_out_splits_without_training(tmp_path) -> None:
    import json

    mod = _module()
    net = _saved_reference(tmp_path / "model.pt")
    argv = ["--dry-run", "--profile", "tiny", "--scans", "40", "--workers", "1", "--evaluate",
            str(tmp_path / "model.pt"), "--out", str(tmp_path / "out")]
    assert mod.main(argv) == 0
    report = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert set(report["auroc"]) == {"validation", "test", "test_shifted"} and report["profile"] == "tiny"
    assert not (tmp_path / "out" / "reference_training.json").exists(), "nothing was trained"
    data = mod.generate(40, "tiny", 0, 1, (64, 64, 48))
    test = np.flatnonzero(np.asarray(data["splits"]) == "test")
    x = mod.windowed_on(data["images"], test, torch.device("cpu"))
    expected = mod.auroc(mod.scores(net, x, 8, False), torch.from_numpy(data["labels"][test]))
    assert report["auroc"]["test"]["mean"] == pytest.approx(expected["mean"], abs=1e-6)


def _trained_on(path, n_scans: int, seed: int = 1) -> None:
    """Record in a saved checkpoint that it was trained on ``n_scans`` patients of ``seed``."""
    mod = _module()
    saved = torch.load(path, weights_only=False)
    saved["model_settings"]["data"] = {"generator_version": mod.GENERATOR_VERSION, "n_scans": n_scans, "seed": seed,
                                       "profile": "tiny"}
    torch.save(saved, path)


def test_seen_patients_counts_test_scans_that_were_training_or_validation_patients() -> None:
    mod = _module()
    trained = {"generator_version": mod.GENERATOR_VERSION, "n_scans": 6000, "seed": 1, "profile": "tiny"}
    # 1500 patients: test and test_shifted are indices 1050-1499, all training patients of the 6000
    assert mod.seen_patients(trained, 1, mod.make_config("tiny", n_scans=1500)) == 450
    assert mod.seen_patients(trained, 1, mod.make_config("tiny", n_scans=6000)) == 0  # the same splits
    assert mod.seen_patients(trained, 3, mod.make_config("tiny", n_scans=1500)) == 0  # other patients
    assert mod.seen_patients(None, 1, mod.make_config("tiny", n_scans=1500)) == 0


def test_evaluate_refuses_test_scans_the_checkpoint_was_trained_on_before_any_data_is_generated(
    tmp_path, capsys
) -> None:
    mod = _module()
    _saved_reference(tmp_path / "model.pt")
    _trained_on(tmp_path / "model.pt", n_scans=6000, seed=1)
    with pytest.raises(SystemExit) as err:
        mod.main(["--dry-run", "--profile", "tiny", "--scans", "40", "--seed", "1", "--workers", "1", "--evaluate",
                  str(tmp_path / "model.pt"), "--out", str(tmp_path / "out")])
    message = capsys.readouterr().err
    assert err.value.code == 2 and "12 of the test scans of 40 patients of seed 1" in message
    assert "another --seed, or with --scans 6000" in message and not (tmp_path / "out" / "evaluation.json").exists()


def test_evaluate_reports_what_the_checkpoint_was_trained_on(tmp_path) -> None:
    import json

    mod = _module()
    _saved_reference(tmp_path / "model.pt")
    _trained_on(tmp_path / "model.pt", n_scans=6000, seed=1)
    assert mod.main(["--dry-run", "--profile", "tiny", "--scans", "40", "--seed", "2", "--workers", "1",
                     "--evaluate", str(tmp_path / "model.pt"), "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert report["trained_on"]["n_scans"] == 6000 and report["trained_on"]["seed"] == 1


def test_evaluate_refuses_a_checkpoint_made_for_another_scan_size(tmp_path) -> None:
    mod = _module()
    _saved_reference(tmp_path / "model.pt", shape=(96, 96, 72))
    with pytest.raises(SystemExit, match=r"takes \[96, 96, 72\] scans, this dataset has \[64, 64, 48\]"):
        mod.main(["--dry-run", "--profile", "tiny", "--scans", "12", "--workers", "1", "--evaluate",
                  str(tmp_path / "model.pt"), "--out", str(tmp_path / "out")])


@pytest.mark.parametrize("renders, message", [("demo,huge", "unknown profiles ['huge']"),
                                              ("demo,demo", "lists a profile twice")])
def test_bad_render_profiles_are_refused_before_any_data_is_generated(renders, message, capsys) -> None:
    assert message in _usage_error(capsys, "--render-profile", renders)
