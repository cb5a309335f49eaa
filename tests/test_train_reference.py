"""``scripts/train_reference.py``: the in-memory trainer of the shipped reference models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_reference.py"


def _module():
    spec = importlib.util.spec_from_file_location("train_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
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
