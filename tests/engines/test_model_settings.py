"""Model settings in checkpoints: recorded by training, used (and checked against overrides) by evaluation/inference."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events

from hirescam_ext import AxialNet
from hirescam_ext.engines import (
    TrainingCheckpointer,
    define_network,
    load_model_settings,
    load_network_weights,
    make_model_settings,
    network_from_settings,
    preprocessing_from_settings,
)
from hirescam_ext.utils.errors import InputError

TINY_NET = {"n_classes": 80, "spatial_size": [64, 64, 48], "trunk": "small", "pretrained": None,
            "custom_convs": True, "custom_conv_padding": 1, "slice_pooling": "mean"}  # fmt: skip
TINY_SPACING = [5.8, 5.8, 6.4]


def _settings(net: torch.nn.Module) -> dict:
    return make_model_settings(net, TINY_SPACING, [64, 64, 48], [-1000, 800], -0.449, attention_grid=[16, 4, 4],
                               dataset={"generator_version": "1.3.0"})  # fmt: skip


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    net = define_network("hirescam_ext.AxialNet", **TINY_NET)
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    torch.save({"model": net.state_dict(), "model_settings": _settings(net)}, path)
    return path


def test_define_network_records_every_constructor_argument_generically() -> None:
    net = define_network("torch.nn.Linear", in_features=3, out_features=2, bias=False)
    settings = make_model_settings(net, None, None, None, None)
    expected = {"_target_": "torch.nn.Linear", "in_features": 3, "out_features": 2, "bias": False}
    assert settings["network_def"] == expected
    rebuilt = network_from_settings(settings)
    assert isinstance(rebuilt, torch.nn.Linear) and rebuilt.bias is None and rebuilt.weight.shape == (2, 3)


def test_checkpointer_saves_the_settings_in_best_and_last(tmp_path: Path) -> None:
    net = define_network("torch.nn.Linear", in_features=3, out_features=2)
    evaluator = Engine(lambda engine, batch: None)
    evaluator.add_event_handler(Events.COMPLETED, lambda e: e.state.metrics.update(val_loss=1.0))
    trainer = Engine(lambda engine, batch: None)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: evaluator.run([0]))
    settings = _settings(net)
    ckpt = TrainingCheckpointer(tmp_path, net, torch.optim.SGD(net.parameters(), lr=0.1), evaluator=evaluator,
                                model_settings=settings)  # fmt: skip
    ckpt.attach(trainer)
    trainer.run([0], max_epochs=1)
    for name in ("best.pt", "last.pt"):
        saved = torch.load(tmp_path / name, map_location="cpu", weights_only=True)["model_settings"]
        assert saved == settings, name
        assert saved["preprocessing"]["spacing"] == TINY_SPACING and saved["package_version"]


def test_without_overrides_the_checkpoint_settings_win(tiny_ckpt: Path) -> None:
    settings = load_model_settings(tiny_ckpt, {"trunk": None, "spatial_size": None, "spacing": None})
    assert settings["source"] == "checkpoint"
    assert settings["network_def"]["trunk"] == "small" and settings["preprocessing"]["spacing"] == TINY_SPACING
    net = network_from_settings(settings)
    load_network_weights(net, tiny_ckpt)  # fits: no shape mismatch
    assert net.spatial_size == (64, 64)


def test_an_equal_override_is_accepted(tiny_ckpt: Path) -> None:
    settings = load_model_settings(tiny_ckpt, {"trunk": "small", "spatial_size": (64, 64, 48)})
    assert settings["preprocessing"]["spatial_size"] == [64, 64, 48]


@pytest.mark.parametrize(
    "setting, value, shown",
    [("trunk", "resnet18", "'small'"), ("spatial_size", [128, 128, 96], "[64, 64, 48]"), ("spacing", [0.8] * 3, "5.8")],
)
def test_a_conflicting_override_names_the_setting_and_both_values(tiny_ckpt, setting, value, shown) -> None:
    with pytest.raises(InputError) as err:
        load_model_settings(tiny_ckpt, {setting: value})
    text = str(err.value)
    assert str(tiny_ckpt) in text and repr(setting) in text and shown in text and repr(value) in text


def test_a_checkpoint_without_settings_uses_the_configuration(tmp_path: Path) -> None:
    net = AxialNet(**TINY_NET)
    bare = tmp_path / "model.pt"
    torch.save(net.state_dict(), bare)
    settings = load_model_settings(bare, {"trunk": "small", "spatial_size": [64, 64, 48]})
    assert settings["source"] == "config" and settings["preprocessing"]["spacing"] is None
    grid = AxialNet.attention_grid((64, 64), z=48, trunk="small", custom_conv_padding=1)
    assert settings["attention_grid"] == list(grid)
    load_network_weights(network_from_settings(settings), bare)


def test_a_mismatch_of_a_checkpoint_without_settings_names_the_likely_setting(tmp_path: Path) -> None:
    bare = tmp_path / "model.pt"
    torch.save({"model": AxialNet(**TINY_NET).state_dict()}, bare)  # trained with trunk small
    net = network_from_settings(load_model_settings(bare, {"spatial_size": [64, 64, 48]}))  # configuration: resnet18
    with pytest.raises(InputError, match="records no model settings.*likely different: trunk"):
        load_network_weights(net, bare)


def test_scans_of_another_spacing_are_prepared_like_the_training_scans(tiny_ckpt: Path, tmp_path: Path) -> None:
    # issue 14 item 1: a finer scan (twice the voxels per axis, same field of view) must be resampled to the trained
    # spacing, not centre-cropped to a quarter of its extent
    rng = np.random.default_rng(0)
    coarse = np.full((64, 64, 48), -1000, np.int16)
    coarse[8:56, 12:52, 6:42] = rng.integers(-200, 200, (48, 40, 36))
    fine = np.repeat(np.repeat(np.repeat(coarse, 2, 0), 2, 1), 2, 2)
    nib.save(nib.Nifti1Image(coarse, np.diag([*TINY_SPACING, 1.0])), tmp_path / "coarse.nii.gz")
    nib.save(nib.Nifti1Image(fine, np.diag([s / 2 for s in TINY_SPACING] + [1.0])), tmp_path / "fine.nii.gz")
    pre = preprocessing_from_settings(load_model_settings(tiny_ckpt), keys=["image"], label_map_keys=[])
    a = pre({"image": str(tmp_path / "coarse.nii.gz")})["image"]
    b = pre({"image": str(tmp_path / "fine.nii.gz")})["image"]
    assert tuple(b.shape) == (1, 64, 64, 48)
    assert float((a - b).abs().mean()) < 0.02  # same anatomy at the same place


def test_a_bare_state_dict_takes_its_settings_from_the_settings_file(tiny_ckpt: Path, tmp_path: Path) -> None:
    # the packaged bundle ships models/model.pt (a bare state dict) with models/model_settings.json
    saved = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    bare, settings_file = tmp_path / "model.pt", tmp_path / "model_settings.json"
    torch.save(saved["model"], bare)
    settings_file.write_text(json.dumps(saved["model_settings"]))
    settings = load_model_settings(bare, {"trunk": None}, settings_file=settings_file)
    assert settings["source"] == "settings_file"
    assert settings["network_def"]["trunk"] == "small" and settings["preprocessing"]["spacing"] == TINY_SPACING
    load_network_weights(network_from_settings(settings), bare)


def test_a_missing_settings_file_is_an_error_naming_it(tmp_path: Path) -> None:
    bare = tmp_path / "model.pt"
    torch.save(AxialNet(**TINY_NET).state_dict(), bare)
    with pytest.raises(InputError, match=r"model_settings.json: model settings file not found"):
        load_model_settings(bare, settings_file=tmp_path / "model_settings.json")


@pytest.mark.parametrize(
    "a, b, same",
    [
        (True, "true", True), ("TRUE", True, True), ("yes", "1", True), (False, "0", True), (True, "false", False),
        ("off", "on", False), (True, 1.0, False), ([64, 64, 48], [64.0, 64.0, 48.0], True), ("small", "small16", False),
    ],
)  # fmt: skip
def test_same_setting_compares_numbers_as_numbers_and_switches_as_switches(a, b, same: bool) -> None:
    from hirescam_ext.engines.model_settings import same_setting

    assert same_setting(a, b) is same and same_setting(b, a) is same


def test_a_switch_override_given_as_a_string_is_checked_as_a_switch(tiny_ckpt: Path) -> None:
    assert load_model_settings(tiny_ckpt, {"custom_convs": "true"})["network_def"]["custom_convs"] is True
    with pytest.raises(InputError, match="'custom_convs' conflicts with the checkpoint"):
        load_model_settings(tiny_ckpt, {"custom_convs": "false"})
