"""``scripts/eval_histogram_baseline.py``: the whole-volume HU-histogram baseline."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
REFERENCE = SCRIPTS.parent / "bundle" / "models" / "reference.pt"


def _module():
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec = importlib.util.spec_from_file_location("eval_histogram_baseline", SCRIPTS / "eval_histogram_baseline.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPTS))
    return module


def test_histogram_counts_every_voxel_once_and_the_window_moves_metal_into_the_bone_bin():
    mod = _module()
    scan = np.full((1, 4, 4, 2), -850, np.int16)
    scan[0, 0, 0, 0] = 3000  # metal
    raw, windowed = np.expm1(mod.histogram_features(scan)), np.expm1(mod.histogram_features(scan, window=True))
    assert np.allclose(raw.sum(), 32) and np.allclose(windowed.sum(), 32)
    metal_bin, window_top_bin = -1, list(mod.BIN_EDGES).index(800)
    assert np.isclose(raw[0, metal_bin], 1) and np.isclose(windowed[0, metal_bin], 0)
    assert np.isclose(windowed[0, window_top_bin], 1) and np.isclose(raw[0, window_top_bin], 0)


def test_logistic_regression_separates_a_label_carried_by_one_feature_and_not_a_shuffled_one():
    mod = _module()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=gen)
    signal = (x[:, 2] > 0).float()
    y = torch.stack([signal, signal[torch.randperm(200, generator=gen)]], dim=1)
    w, b = mod.fit_logistic(x[:100], y[:100])
    from hirescam_ext.metrics.auroc import compute_multilabel_auroc

    auroc = list(compute_multilabel_auroc(x[100:] @ w + b, y[100:]).per_label.values())
    assert auroc[0] > 0.95 and abs(auroc[1] - 0.5) < 0.2


def test_pooled_activations_give_mean_and_max_of_every_channel_per_scan():
    from hirescam_ext.networks import AxialNet

    mod = _module()
    net = AxialNet(n_classes=80, spatial_size=(64, 64), trunk="small16", custom_conv_padding=1)
    images = np.random.default_rng(0).integers(-1000, 800, (3, 64, 64, 12)).astype(np.int16)
    pooled = mod.pooled_activations(net, images, batch=2)
    assert set(pooled) == set(mod.PROBE_LAYERS)
    assert pooled["trunk.layer4"].shape == (3, 2 * 64) and pooled["custom_convs.relu4"].shape == (3, 2 * 16)
    relu = pooled["custom_convs.relu4"]
    assert bool((relu[:, 16:] >= relu[:, :16]).all())  # the maximum is never below the mean


def test_probing_a_layer_the_network_does_not_have_names_it():
    import pytest

    from hirescam_ext.networks import AxialNet

    mod = _module()
    net = AxialNet(n_classes=3, spatial_size=(64, 64), trunk="small16", custom_conv_padding=1)
    with pytest.raises(ValueError, match="trunk.layer9"):
        mod.pooled_activations(net, np.zeros((1, 64, 64, 12), np.int16), layers=("trunk.layer9",))


def test_a_probe_file_that_is_missing_not_a_checkpoint_or_of_another_size_is_refused_before_generating(
    tmp_path, capsys
):
    import pytest

    mod = _module()
    for argv, message in (
        (["--probe", str(tmp_path / "none.pt")], "no such file"),
        (["--probe", str(tmp_path / "other.pt")], "not a reference AxialNet checkpoint"),
        (["--probe", str(REFERENCE), "--profile", "small"], "gives (96, 96)"),
    ):
        torch.save({"weights": {}}, tmp_path / "other.pt")
        with pytest.raises(SystemExit) as err:
            mod.main([*argv, "--scans", "4", "--out", str(tmp_path / "out")])
        assert err.value.code == 2 and message in capsys.readouterr().err
