"""Starting a training run from another model's weights (``init_ckpt`` of ``configs/train.json``): fine-tuning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from hirescam_ext.engines import define_network, init_from_checkpoint, make_model_settings
from hirescam_ext.utils.errors import InputError

NET = {"n_classes": 80, "spatial_size": [64, 64, 48], "trunk": "small", "custom_convs": True, "custom_conv_padding": 1}
SPACING = [5.8, 5.8, 6.4]


def _settings(net: torch.nn.Module, spacing=SPACING) -> dict:
    return make_model_settings(net, spacing, [64, 64, 48], [-1000, 800], -0.449)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    torch.manual_seed(1)
    net = define_network("hirescam_ext.AxialNet", **NET, density_bands=True)
    path = tmp_path_factory.mktemp("init") / "start.pt"
    state = {k: v.half() for k, v in net.state_dict().items()}  # fp16, as the shipped checkpoints
    torch.save({"model": state, "model_settings": _settings(net)}, path)
    return path, state


def _fresh(**changes) -> torch.nn.Module:
    torch.manual_seed(2)
    return define_network("hirescam_ext.AxialNet", **{**NET, "density_bands": True, **changes})


def test_the_network_starts_from_the_checkpoints_weights(saved) -> None:
    path, state = saved
    net = _fresh()
    assert init_from_checkpoint(net, path, _settings(net)) is net
    assert all(torch.equal(net.state_dict()[k].half(), v) for k, v in state.items())


def test_no_checkpoint_leaves_the_network_as_built(saved) -> None:
    net = _fresh()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    for empty in (None, ""):
        init_from_checkpoint(net, empty, _settings(net))
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items())


def test_another_network_is_refused_naming_each_setting_with_both_values(saved) -> None:
    path, _ = saved
    net = _fresh(trunk="small16", density_bands=False)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(InputError) as err:
        init_from_checkpoint(net, path, _settings(net))
    text = str(err.value)
    assert str(path) in text
    assert "trunk: checkpoint 'small', configuration 'small16'" in text
    assert "density_bands: checkpoint True, configuration False" in text
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items())  # nothing loaded


def test_a_switch_given_as_a_string_on_the_command_line_matches_the_checkpoint(saved) -> None:
    path, state = saved
    net = _fresh(density_bands="true")  # `--density_bands true` reaches the config as a string
    init_from_checkpoint(net, path, _settings(net))
    key = next(iter(state))
    assert torch.equal(net.state_dict()[key].half(), state[key])


def test_a_default_left_out_of_one_definition_is_no_difference(saved) -> None:
    path, _ = saved
    net = _fresh(custom_conv_kernel=3, slice_pooling="mean")  # the checkpoint's definition omits both defaults
    init_from_checkpoint(net, path, _settings(net))


def test_scans_prepared_otherwise_are_a_warning_not_an_error(saved, caplog) -> None:
    path, _ = saved
    net = _fresh()
    with caplog.at_level(logging.WARNING, logger="hirescam_ext.engines.checkpoint"):
        init_from_checkpoint(net, path, _settings(net, spacing=[2.9, 2.9, 3.2]))
    assert "spacing [5.8, 5.8, 6.4] -> [2.9, 2.9, 3.2]" in caplog.text


def test_a_checkpoint_without_settings_is_checked_by_its_shapes(tmp_path: Path) -> None:
    bare = tmp_path / "model.pt"
    torch.save(_fresh(trunk="small16").state_dict(), bare)
    net = _fresh()
    with pytest.raises(InputError, match="does not match the network"):
        init_from_checkpoint(net, bare, _settings(net))


def test_the_run_records_the_checkpoint_it_started_from(saved) -> None:
    path, _ = saved
    settings = make_model_settings(_fresh(), SPACING, [64, 64, 48], [-1000, 800], -0.449, initialized_from=path)
    start = settings["initialized_from"]
    assert start["path"] == str(path.resolve()) and len(start["sha256"]) == 64
    assert "initialized_from" not in _settings(_fresh())
