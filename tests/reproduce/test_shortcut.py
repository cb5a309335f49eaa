"""The planted shortcut over checkpoints (hirescam_ext.reproduce.shortcut, scripts/eval_shortcut.py): every
checkpoint scored on the same prepared scans, with the confounder ledger's fit of the logit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from hirescam_ext.reproduce.shortcut import shortcut_over_checkpoints, shortcut_table
from hirescam_ext.utils.errors import InputError

SPLITS = ("test", "test_shifted")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """18 tiny scans, 6 in each of training / test / test_shifted."""
    from hirescam_ext.synthetic.generator import generate_dataset

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = tmp_path_factory.mktemp("shortcut_data")
    return generate_dataset(out, profile="tiny", n_scans=18, seed=5, progress=False, split_fractions=(1, 0, 1, 1))


def _checkpoint(path: Path, seed: int, epoch: int, mask_loss: bool, spatial_size=(64, 64, 48)) -> Path:
    """An AxialNet training checkpoint of the tiny profile, with model settings and a training record."""
    from hirescam_ext.engines.model_settings import make_model_settings
    from hirescam_ext.networks import AxialNet
    from hirescam_ext.synthetic.generator import make_config

    definition = {"_target_": "hirescam_ext.AxialNet", "n_classes": 80, "spatial_size": list(spatial_size),
                  "trunk": "small", "pretrained": None, "custom_convs": True, "custom_conv_padding": 1}
    torch.manual_seed(seed)
    net = AxialNet(**{k: v for k, v in definition.items() if k != "_target_"})
    settings = make_model_settings(definition, spacing=list(make_config("tiny").spacing),
                                   spatial_size=list(spatial_size), hu_range=[-1000.0, 800.0], center=-0.449,
                                   training={"seed": seed, "mask_loss": mask_loss, "epochs": 8})
    torch.save({"model": net.state_dict(), "model_settings": settings, "trainer": {"epoch": epoch}}, path)
    return path


@pytest.fixture(scope="module")
def scored(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], dict]:
    root = tmp_path_factory.mktemp("shortcut_ckpts")
    for arm in ("cls", "mask"):
        (root / arm).mkdir()
    ckpts = [_checkpoint(root / "cls" / "epoch_3.pt", 0, 3, False),
             _checkpoint(root / "mask" / "epoch_5.pt", 1, 5, True)]
    return ckpts, shortcut_over_checkpoints(ckpts, data, progress=False)


def test_each_checkpoint_is_scored_on_each_split_in_the_order_given(scored) -> None:
    ckpts, out = scored
    assert out["n_scans"] == {"test": 6, "test_shifted": 6}
    assert [r["checkpoint"] for r in out["checkpoints"]] == [str(c) for c in ckpts]
    assert [(r["epoch"], r["seed"], r["mask_loss"]) for r in out["checkpoints"]] == [(3, 0, False), (5, 1, True)]
    for row in out["checkpoints"]:
        assert set(row["splits"]) == set(SPLITS)
        assert all(0.0 <= row["splits"][s]["auroc"] <= 100.0 for s in SPLITS)


def test_the_drop_is_test_minus_test_shifted_auroc(scored) -> None:
    for row in scored[1]["checkpoints"]:
        assert row["drop"] == pytest.approx(row["splits"]["test"]["auroc"] - row["splits"]["test_shifted"]["auroc"])


def test_effects_are_the_confounder_ledgers_fit_of_the_same_logits(scored, data: Path) -> None:
    from hirescam_ext.data import load_datalist
    from hirescam_ext.engines.checkpoint import load_network_weights
    from hirescam_ext.engines.model_settings import (
        load_model_settings,
        network_from_settings,
        preprocessing_from_settings,
    )
    from hirescam_ext.reproduce.analysis import confounder_ledger, make_explainers

    ckpt, row = scored[0][1], scored[1]["checkpoints"][1]
    settings = load_model_settings(ckpt, require_file=True)
    net = network_from_settings(settings)
    load_network_weights(net, ckpt)
    pre = preprocessing_from_settings(settings, keys=["image"], label_map_keys=())
    items = [{**item, "image": pre({"image": item["image"]})["image"]}
             for item in load_datalist(data / "datalist.json", "test_shifted", base_dir=data)]
    ledger = confounder_ledger(items, net.eval(), make_explainers(net)["hirescam"], data, (64, 64, 48))
    for key in ("fat_effect", "label_effect"):
        assert ledger["logit"][key] is not None  # both classes and several fat thicknesses among the scans
        assert row["splits"]["test_shifted"][key] == pytest.approx(ledger["logit"][key], rel=1e-4, abs=1e-5)


def test_max_scans_takes_the_first_scans_of_each_split(data: Path, scored) -> None:
    out = shortcut_over_checkpoints(scored[0][:1], data, splits=["test"], max_scans=4, progress=False)
    assert out["n_scans"] == {"test": 4}
    assert out["checkpoints"][0]["drop"] is None and out["checkpoints"][0]["lesion_to_fat"] is None


def test_a_checkpoint_prepared_otherwise_is_refused_by_name(data: Path, scored, tmp_path: Path) -> None:
    other = _checkpoint(tmp_path / "other.pt", 0, 1, False, spatial_size=(64, 64, 36))
    with pytest.raises(InputError, match="other.pt.*preprocessing"):
        shortcut_over_checkpoints([scored[0][0], other], data, progress=False)


def test_a_checkpoint_without_model_settings_is_refused_by_name(data: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), bare)
    with pytest.raises(InputError, match="bare.pt"):
        shortcut_over_checkpoints([bare], data, progress=False)


def test_a_scan_without_fat_thickness_is_refused_naming_the_findings_file(data: Path, scored, tmp_path: Path) -> None:
    copy = tmp_path / "data"
    copy.mkdir()
    (copy / "datalist.json").write_text((data / "datalist.json").read_text())
    (copy / "images").symlink_to(data / "images")
    findings = json.loads((data / "findings.json").read_text())
    for record in findings.values():
        record.pop("fat_thickness_mm", None)
    (copy / "findings.json").write_text(json.dumps(findings))
    with pytest.raises(InputError, match="findings.json.*fat_thickness_mm"):
        shortcut_over_checkpoints(scored[0][:1], copy, progress=False)


def test_the_table_has_one_row_per_checkpoint_named_below_their_common_folder(scored) -> None:
    table = shortcut_table(scored[1]).splitlines()
    assert len(table) == 2 + 2
    assert table[2].startswith("| cls/epoch_3.pt | 3 | False |")
    assert table[3].startswith("| mask/epoch_5.pt | 5 | True |")


def test_script_writes_the_json_and_table_and_orders_epochs_as_numbers(load_script, data: Path, scored,
                                                                        tmp_path: Path, capsys) -> None:
    script = load_script("eval_shortcut")
    e10, e9 = (_checkpoint(tmp_path / f"epoch_{e}.pt", 0, e, False) for e in (10, 9))
    status = script.main(["--dataset", str(data), "--checkpoints", str(e10), str(e9), "--sort", "--splits", "test",
                          "--out", str(tmp_path / "s.json"), "--markdown", str(tmp_path / "s.md"), "--no-progress"])
    assert status == 0
    written = json.loads((tmp_path / "s.json").read_text())
    assert [r["epoch"] for r in written["checkpoints"]] == [9, 10]
    assert json.loads(capsys.readouterr().out) == written
    assert (tmp_path / "s.md").read_text().count("\n") == 4
    assert np.isfinite(written["checkpoints"][0]["splits"]["test"]["mean_auroc"])


def test_script_reports_a_missing_checkpoint_and_exits_2(load_script, data: Path, tmp_path: Path, capsys) -> None:
    script = load_script("eval_shortcut")
    assert script.main(["--dataset", str(data), "--checkpoints", str(tmp_path / "gone.pt")]) == 2
    assert "gone.pt" in capsys.readouterr().err
