"""Starting a training run from another model's weights (``init_ckpt`` of ``configs/train.json``): fine-tuning."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch

from hirescam_ext.engines import define_network, init_from_checkpoint, make_model_settings
from hirescam_ext.utils.errors import InputError

NET = {"n_classes": 80, "spatial_size": [64, 64, 48], "trunk": "small", "custom_convs": True, "custom_conv_padding": 1}
SPACING = [5.8, 5.8, 6.4]


def _settings(net: torch.nn.Module, spacing: list[float] = SPACING, hu_range: tuple | list = (-1000, 800)) -> dict:
    return make_model_settings(net, spacing, [64, 64, 48], hu_range, -0.449)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    torch.manual_seed(1)
    net = define_network("hirescam_ext.AxialNet", **NET, density_bands=True)
    path = tmp_path_factory.mktemp("init") / "start.pt"
    state = {k: v.half() for k, v in net.state_dict().items()}  # fp16, as the shipped checkpoints
    torch.save({"model": state, "model_settings": _settings(net)}, path)
    return path, state


def _fresh(**changes: object) -> torch.nn.Module:
    torch.manual_seed(2)
    return define_network("hirescam_ext.AxialNet", **{**NET, "density_bands": True, **changes})


def test_the_network_starts_from_the_checkpoints_weights(saved: tuple[Path, dict]) -> None:
    path, state = saved
    net = _fresh()
    assert init_from_checkpoint(net, path, _settings(net)) is net
    assert all(torch.equal(net.state_dict()[k].half(), v) for k, v in state.items())


def test_no_checkpoint_leaves_the_network_as_built() -> None:
    net = _fresh()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    for empty in (None, "", "null", "None"):  # a command line hands `--init_ckpt null` over as a string
        init_from_checkpoint(net, empty, _settings(net))
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items())


def test_another_network_is_refused_naming_each_setting_with_both_values(saved: tuple[Path, dict]) -> None:
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


def test_a_switch_given_as_a_string_on_the_command_line_matches_the_checkpoint(saved: tuple[Path, dict]) -> None:
    path, state = saved
    net = _fresh(density_bands="true")  # `--density_bands true` reaches the config as a string
    init_from_checkpoint(net, path, _settings(net))
    assert all(torch.equal(net.state_dict()[k].half(), v) for k, v in state.items())


def test_a_default_left_out_of_one_definition_is_no_difference(saved: tuple[Path, dict]) -> None:
    path, _ = saved
    net = _fresh(custom_conv_kernel=3, slice_pooling="mean")  # the checkpoint's definition omits both defaults
    init_from_checkpoint(net, path, _settings(net))


def test_scans_prepared_otherwise_are_a_warning_not_an_error(
    saved: tuple[Path, dict], caplog: pytest.LogCaptureFixture
) -> None:
    path, _ = saved
    net = _fresh(input_hu_range=[-1024, 1000])  # what train.json builds for --hu_range [-1024,1000]
    with caplog.at_level(logging.WARNING, logger="hirescam_ext.engines.checkpoint"):
        init_from_checkpoint(net, path, _settings(net, spacing=[2.9, 2.9, 3.2], hu_range=[-1024, 1000]))
    assert "spacing [5.8, 5.8, 6.4] -> [2.9, 2.9, 3.2]" in caplog.text
    assert "hu_range [-1000, 800] -> [-1024, 1000]" in caplog.text


def test_a_checkpoint_without_settings_is_checked_by_its_shapes(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    bare = tmp_path / "model.pt"
    torch.save(_fresh(trunk="small16").state_dict(), bare)
    net = _fresh()
    with caplog.at_level(logging.WARNING, logger="hirescam_ext.engines.checkpoint"):
        with pytest.raises(InputError, match="does not match the network"):
            init_from_checkpoint(net, bare, _settings(net))
    assert "records no model settings" in caplog.text


def test_a_bare_state_dict_is_checked_against_its_settings_file(tmp_path: Path) -> None:
    """A packaged bundle's models/model.pt beside the models/model_settings.json that `hirescam package` writes."""
    shipped = _fresh(slice_pooling="max")  # same weights' shapes as a mean-pooling network: only the file tells
    bare, settings_file = tmp_path / "model.pt", tmp_path / "model_settings.json"
    torch.save(shipped.state_dict(), bare)
    settings_file.write_text(json.dumps(_settings(shipped)))
    net = _fresh()
    with pytest.raises(InputError, match="slice_pooling: checkpoint 'max', configuration 'mean'"):
        init_from_checkpoint(net, bare, _settings(net), settings_file=settings_file)
    init_from_checkpoint(net, bare, _settings(net))  # without the file: shapes only, and they fit


def test_starting_from_a_checkpoint_this_run_overwrites_is_refused(saved: tuple[Path, dict], tmp_path: Path) -> None:
    path, _ = saved
    own = tmp_path / "best.pt"
    own.write_bytes(path.read_bytes())
    net = _fresh()
    with pytest.raises(InputError, match="would overwrite the file it starts from"):
        init_from_checkpoint(net, own, _settings(net), ckpt_dir=tmp_path)
    init_from_checkpoint(net, own, _settings(net), ckpt_dir=tmp_path / "elsewhere")


def test_the_run_records_the_checkpoint_it_started_from(saved: tuple[Path, dict]) -> None:
    path, _ = saved
    settings = make_model_settings(_fresh(), SPACING, [64, 64, 48], [-1000, 800], -0.449, initialized_from=path)
    start = settings["initialized_from"]
    assert start["path"] == os.path.abspath(path) and len(start["sha256"]) == 64
    assert "initialized_from" not in _settings(_fresh())
    null = make_model_settings(_fresh(), SPACING, [64, 64, 48], [-1000, 800], -0.449, initialized_from="null")
    assert "initialized_from" not in null


def test_a_link_to_the_runs_own_checkpoint_is_refused_too(saved: tuple[Path, dict], tmp_path: Path) -> None:
    path, _ = saved
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(path.read_bytes())
    link = tmp_path / "start.pt"
    link.symlink_to(run / "best.pt")
    with pytest.raises(InputError, match="would overwrite the file it starts from"):
        init_from_checkpoint(_fresh(), link, ckpt_dir=run)


def test_false_from_a_command_line_means_no_checkpoint_and_a_number_is_refused() -> None:
    net = _fresh()
    assert init_from_checkpoint(net, False) is net  # fire turns `--init_ckpt False` into a bool
    with pytest.raises(InputError, match="a checkpoint path was expected"):
        init_from_checkpoint(net, 3)
